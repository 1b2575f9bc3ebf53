/**
 * Accept-Encoding negotiation (RFC 9110 §12.5.3) and what is worth
 * compressing (src/worker/compression/).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ContentCoding } from '../../src/config/types.js';
import { chooseCoding, parseAcceptEncoding } from '../../src/worker/compression/negotiate.js';
import { varyOnAcceptEncoding } from '../../src/worker/compression/on-the-fly.js';
import { encodedEtag, isCompressible } from '../../src/worker/compression/types.js';

const ALL: readonly ContentCoding[] = ['br', 'zstd', 'gzip'];

const cases: [string | undefined, readonly ContentCoding[], ContentCoding | null][] = [
  [undefined, ALL, null],
  ['', ALL, null],
  ['gzip', ALL, 'gzip'],
  ['gzip, deflate, br, zstd', ALL, 'br'],
  ['gzip, deflate, br, zstd', ['gzip', 'br'], 'gzip'],
  ['br;q=0.5, gzip', ALL, 'gzip'],
  ['br;q=0, gzip;q=0.1', ALL, 'gzip'],
  ['*', ALL, 'br'],
  ['*;q=0, gzip', ALL, 'gzip'],
  ['br;q=0, *', ALL, 'zstd'],
  ['identity', ALL, null],
  ['x-gzip', ALL, 'gzip'],
  ['BR', ALL, 'br'],
  ['br;q=1.5', ALL, null],
  ['br;q=abc, gzip;q=0.2', ALL, 'gzip'],
  ['gzip;q=0', ALL, null],
  [`${'a,'.repeat(100)}gzip`, ALL, null],
  [`${' '.repeat(2000)}gzip`, ALL, null],
  ['gzip ; q=0.8 , br ; q=0.9', ALL, 'br'],
];

for (const [header, available, expected] of cases) {
  it(`Accept-Encoding ${JSON.stringify(header?.slice(0, 40))} with [${available.join(', ')}] -> ${expected}`, () => {
    assert.equal(chooseCoding(header, available), expected);
  });
}

it('reads at most 32 elements of a header', () => {
  const weights = parseAcceptEncoding(Array.from({ length: 1000 }, (_, i) => `c${i}`).join(','));
  assert.equal(weights.named.size, 32);
});

it('compresses text, JSON, JavaScript, SVG and WebAssembly, never images or event streams', () => {
  for (const type of [
    'text/html; charset=utf-8',
    'application/json',
    'text/javascript',
    'image/svg+xml',
    'application/wasm',
    'application/ld+json',
  ])
    assert.equal(isCompressible(type), true, type);
  for (const type of ['image/png', 'video/mp4', 'application/zip', 'text/event-stream', 'application/octet-stream', undefined])
    assert.equal(isCompressible(type), false, String(type));
});

it('gives each coding its own weak ETag', () => {
  assert.equal(encodedEtag('"abc"', 'br'), 'W/"abc-br"');
  assert.equal(encodedEtag('W/"abc"', 'gzip'), 'W/"abc-gz"');
  assert.equal(encodedEtag('W/"abc"', 'zstd'), 'W/"abc-zst"');
});

it('adds Accept-Encoding to Vary once', () => {
  assert.equal(varyOnAcceptEncoding(undefined), 'Accept-Encoding');
  assert.equal(varyOnAcceptEncoding('Origin'), 'Origin, Accept-Encoding');
  assert.equal(varyOnAcceptEncoding('accept-encoding'), 'accept-encoding');
  assert.equal(varyOnAcceptEncoding('*'), '*');
});
