/**
 * The static handler's request-path decoding and containment rules
 * (src/worker/handlers/static/path.ts), without a file system: every
 * refusal names its reason, every accepted path decodes exactly once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeRequestPath, encodeQuery, hasHiddenSegment, isInside, isServable } from '../../src/worker/handlers/static/path.js';

describe('decodeRequestPath', () => {
  const accepted: readonly [string, string, string][] = [
    ['/', '/', '/'],
    ['/hello.txt', '/hello.txt', '/hello.txt'],
    ['/caf%C3%A9.txt', '/caf%C3%A9.txt', '/café.txt'],
    ['/a%20b/', '/a%20b/', '/a b/'],
    ['http://static.test/x', '/x', '/x'],
    ['https://static.test', '/', '/'],
    ['/..;/secret', '/..;/secret', '/..;/secret'],
    ['/%ef%bc%8e%ef%bc%8e/secret', '/%ef%bc%8e%ef%bc%8e/secret', '/．．/secret'],
  ];
  for (const [raw, urlPath, decoded] of accepted) {
    it(`accepts ${JSON.stringify(raw)} as ${JSON.stringify(decoded)}`, () => {
      assert.deepEqual(decodeRequestPath(raw), { urlPath, decoded });
    });
  }

  const refused: readonly [string, string][] = [
    ['secret', 'not an origin-form path'],
    ['*', 'not an origin-form path'],
    ['ftp://static.test/x', 'not an origin-form path'],
    ['http://static.test?x', 'not an origin-form path'],
    ['/a b', 'raw control, non-ASCII, backslash or fragment'],
    ['/caf\u00e9', 'raw control, non-ASCII, backslash or fragment'],
    ['/..\\secret', 'raw control, non-ASCII, backslash or fragment'],
    ['/hello.txt#/../secret', 'raw control, non-ASCII, backslash or fragment'],
    ['/a%2fb', 'encoded path separator'],
    ['/a%5Cb', 'encoded path separator'],
    ['/%', 'malformed percent-encoding or UTF-8'],
    ['/%zz', 'malformed percent-encoding or UTF-8'],
    ['/%e2%82', 'malformed percent-encoding or UTF-8'],
    ['/%c0%ae%c0%ae/secret', 'malformed percent-encoding or UTF-8'],
    ['/%u002e%u002e/secret', 'malformed percent-encoding or UTF-8'],
    ['/hello.txt%00', 'encoded control character'],
    ['/%0d%0aSet-Cookie:x=1', 'encoded control character'],
    ['/%7f', 'encoded control character'],
    ['/%c2%85', 'encoded control character'],
    ['/%252e%252e/secret', 'double encoding'],
    ['/%252f', 'double encoding'],
    ['/..', 'dot segment'],
    ['/./hello.txt', 'dot segment'],
    ['/sub/../../secret', 'dot segment'],
    ['/%2e%2e/secret', 'dot segment'],
    ['/hello.txt/..', 'dot segment'],
  ];
  for (const [raw, reason] of refused) {
    it(`refuses ${JSON.stringify(raw)}: ${reason}`, () => assert.equal(decodeRequestPath(raw), reason));
  }
});

describe('hasHiddenSegment', () => {
  const cases: readonly [string, boolean][] = [
    ['/', false],
    ['/index.html', false],
    ['/a.b/c.d', false],
    ['/.env', true],
    ['/sub/.git/config', true],
    ['/.well-known', false],
    ['/.well-known/', false],
    ['/.well-known/acme-challenge/token', false],
    ['/.well-known/.hidden', true],
    ['/.well-knownx', true],
    ['/sub/.well-known/x', true],
  ];
  for (const [decoded, hidden] of cases) {
    it(`${JSON.stringify(decoded)}: ${hidden ? 'hidden' : 'visible'}`, () => assert.equal(hasHiddenSegment(decoded), hidden));
  }
});

describe('containment', () => {
  it('isInside takes the directory itself and what is below it, not a sibling sharing its prefix', () => {
    assert.equal(isInside('/srv/www', '/srv/www'), true);
    assert.equal(isInside('/srv/www/a/b', '/srv/www'), true);
    assert.equal(isInside('/srv/www/a', '/srv/www/'), true);
    assert.equal(isInside('/srv/www2/a', '/srv/www'), false);
    assert.equal(isInside('/srv', '/srv/www'), false);
  });

  it('isServable refuses a real path outside the root, or reached through a hidden name', () => {
    assert.equal(isServable('/srv/www/index.html', '/srv/www'), true);
    assert.equal(isServable('/etc/passwd', '/srv/www'), false);
    assert.equal(isServable('/srv/www/.env', '/srv/www'), false);
    assert.equal(isServable('/srv/www/sub/.git/HEAD', '/srv/www'), false);
    // The root's own path may hold a dot: only what lies below it is judged.
    assert.equal(isServable('/home/.sites/www/index.html', '/home/.sites/www'), true);
    assert.equal(isServable('/srv/index.html', '/'), true);
    assert.equal(isServable('/.secret', '/'), false);
  });
});

describe('encodeQuery', () => {
  it('escapes what is not printable ASCII and keeps the rest', () => {
    assert.equal(encodeQuery('?a=1&b=two'), '?a=1&b=two');
    assert.equal(encodeQuery('?q=a b\r\nX: y'), '?q=a%20b%0D%0AX:%20y');
    assert.equal(encodeQuery('?n=\u00e9'), '?n=%E9');
  });
});
