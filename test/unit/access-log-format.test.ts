/**
 * Access log lines (src/worker/access-log/format.ts): nginx's combined
 * format byte for byte, its escaping, and the JSON form.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type AccessRecord, combinedLine, escapeField, jsonLine, timeLocal } from '../../src/worker/access-log/format.js';
import { parseBasic } from '../../src/worker/auth/basic.js';
import { parseHtpasswd } from '../../src/config/htpasswd.js';

const RECORD: AccessRecord = {
  clientIp: '203.0.113.7',
  user: null,
  startedAtMs: Date.UTC(2026, 9, 10, 13, 55, 36),
  method: 'GET',
  target: '/index.html',
  protocol: 'HTTP/1.1',
  status: 200,
  bodyBytes: 2326,
  referer: 'https://example.com/start',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
  host: 'example.com',
  durationMs: 1.5,
  event: null,
};

it('writes the combined format exactly as nginx does', () => {
  assert.equal(
    combinedLine(RECORD),
    '203.0.113.7 - - [10/Oct/2026:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326 "https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64)"\n',
  );
  assert.equal(
    combinedLine({ ...RECORD, user: 'alice', referer: undefined, userAgent: undefined }),
    '203.0.113.7 - alice [10/Oct/2026:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326 "-" "-"\n',
  );
});

it('escapes quotes, backslashes, controls and non-ASCII as nginx does (one line, fields intact)', () => {
  assert.equal(escapeField('a"b\\c\nd\x7fé'), 'a\\x22b\\x5Cc\\x0Ad\\x7F\\xC3\\xA9');
  const line = combinedLine({ ...RECORD, userAgent: 'evil"\n127.0.0.1 - - [forged]', target: '/a b"c' });
  assert.equal(line.split('\n').length, 2);
  assert.match(line, /"GET \/a b\\x22c HTTP\/1\.1"/);
});

it('keeps a line bounded whatever the request held', () => {
  const line = combinedLine({ ...RECORD, target: `/${'é'.repeat(20000)}`, userAgent: '"'.repeat(20000), referer: 'x'.repeat(20000) });
  assert.ok(Buffer.byteLength(line) < 32768);
});

it('formats $time_local in UTC', () => assert.equal(timeLocal(Date.UTC(2000, 0, 2, 3, 4, 5)), '02/Jan/2000:03:04:05 +0000'));

it('writes JSON lines', () => {
  const parsed = JSON.parse(jsonLine({ ...RECORD, user: 'alice', event: 'request.not_found' })) as Record<string, unknown>;
  assert.deepEqual(parsed, {
    time: '2026-10-10T13:55:36.000Z',
    client_ip: '203.0.113.7',
    user: 'alice',
    method: 'GET',
    host: 'example.com',
    target: '/index.html',
    protocol: 'HTTP/1.1',
    status: 200,
    bytes: 2326,
    referer: 'https://example.com/start',
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64)',
    duration_ms: 1.5,
    event: 'request.not_found',
  });
});

it('reads Basic credentials and refuses what is malformed', () => {
  const basic = (text: string): string => `Basic ${Buffer.from(text).toString('base64')}`;
  assert.deepEqual(parseBasic(basic('alice:pass:word')), { user: 'alice', password: 'pass:word' });
  assert.deepEqual(parseBasic(`basic ${Buffer.from('bob:ü').toString('base64')}`), { user: 'bob', password: 'ü' });
  assert.equal(parseBasic(undefined), null);
  assert.equal(parseBasic('Bearer abc'), null);
  for (const bad of ['Basic !!!', 'Basic YWxpY2U=', `Basic ${'A'.repeat(2000)}`, basic('a:\x01'), 'Basic /w==', 'Basic YQ']) {
    assert.equal(typeof parseBasic(bad), 'string', bad.slice(0, 30));
  }
});

it('parses htpasswd -B lines and refuses the rest', () => {
  const hash = `$2y$05$${'a'.repeat(53)}`;
  assert.deepEqual(parseHtpasswd(`alice:${hash}\n# comment\n\nbob:${hash}\r\n`), {
    ok: true,
    entries: [
      ['alice', hash],
      ['bob', hash],
    ],
  });
  assert.equal(parseHtpasswd('alice:$apr1$abc$def').ok, false);
  assert.equal(parseHtpasswd('alice:{SHA}abc=').ok, false);
  assert.equal(parseHtpasswd(`alice:$2y$31$${'a'.repeat(53)}`).ok, false, 'a cost no request can pay');
  assert.equal(parseHtpasswd(`alice:${hash}\nalice:${hash}`).ok, false);
  assert.equal(parseHtpasswd('no colon').ok, false);
});
