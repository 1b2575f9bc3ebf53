/**
 * How the dashboard's worker side tells a client with the token from one
 * without (src/worker/dashboard/auth.ts): Bearer headers, the signed login
 * cookie, and the limit on failed attempts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  bearerToken,
  FAILURE_BURST,
  FAILURE_REFILL_MS,
  FailedAttempts,
  perWorkerLimit,
  SESSION_COOKIE,
  SESSION_MS,
  sessionCookie,
  tokenMatches,
  validSession,
} from '../../src/worker/dashboard/auth.js';

const TOKEN = 'f'.repeat(16) + '0123456789abcdef'.repeat(3);
const DIGEST = createHash('sha256').update(TOKEN).digest('hex');
const KEY = 'ab'.repeat(32);
const NOW = 1_800_000_000_000;

describe('the token', () => {
  it('matches only itself, by digest', () => {
    assert.equal(tokenMatches(TOKEN, DIGEST), true);
    assert.equal(tokenMatches(`${TOKEN}x`, DIGEST), false);
    assert.equal(tokenMatches('', DIGEST), false);
  });

  const headers: [string | undefined, string | null][] = [
    [`Bearer ${TOKEN}`, TOKEN],
    [`bearer ${TOKEN}`, TOKEN],
    [`Bearer   ${TOKEN}  `, TOKEN],
    ['Bearer abc+/=', 'abc+/='],
    [undefined, null],
    ['', null],
    [`Basic ${TOKEN}`, null],
    ['Bearer', null],
    ['Bearer a b', null],
    ['Bearer a\u0000b', null],
    ['Bearer <script>', null],
  ];
  for (const [header, token] of headers) {
    it(`reads ${JSON.stringify(header)} as ${JSON.stringify(token)}`, () => assert.equal(bearerToken(header), token));
  }
});

describe('the login cookie', () => {
  const value = (setCookie: string): string => setCookie.split(';', 1)[0]!;

  it('is HttpOnly, SameSite=Strict, for the whole site, Secure only over HTTPS', () => {
    const plain = sessionCookie(KEY, NOW, false);
    assert.match(plain, new RegExp(`^${SESSION_COOKIE}=v1\\.\\d+\\.[0-9a-f]{64}; `));
    for (const attribute of ['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${SESSION_MS / 1000}`]) assert.ok(plain.includes(attribute));
    assert.ok(!plain.includes('Secure'));
    assert.ok(sessionCookie(KEY, NOW, true).endsWith('; Secure'));
  });

  it('is accepted until it expires, and never holds the token', () => {
    const cookie = value(sessionCookie(KEY, NOW, false));
    assert.ok(!cookie.includes(TOKEN));
    assert.equal(validSession(`other=1; ${cookie}`, KEY, NOW + 1000), true);
    assert.equal(validSession(cookie, KEY, NOW + SESSION_MS - 1), true);
    assert.equal(validSession(cookie, KEY, NOW + SESSION_MS), false);
  });

  it('is refused when signed with another key, altered, or lasting longer than a login can', () => {
    const cookie = value(sessionCookie(KEY, NOW, false));
    assert.equal(validSession(cookie, 'cd'.repeat(32), NOW), false);
    const [name, rest] = cookie.split('=') as [string, string];
    const [version, expiry, signature] = rest.split('.') as [string, string, string];
    assert.equal(validSession(`${name}=${version}.${Number(expiry) + 1000}.${signature}`, KEY, NOW), false);
    assert.equal(validSession(`${name}=${version}.${expiry}.${'0'.repeat(64)}`, KEY, NOW), false);
    // Signed correctly but far in the future: a clock set back, or a key that leaked.
    const late = value(sessionCookie(KEY, NOW + 10 * SESSION_MS, false));
    assert.equal(validSession(late, KEY, NOW), false);
    assert.equal(validSession(undefined, KEY, NOW), false);
    assert.equal(validSession(`${SESSION_COOKIE}=`, KEY, NOW), false);
  });
});

describe('failed attempts', () => {
  it(`lets a client fail ${FAILURE_BURST} times, then holds it back until a token refills`, () => {
    const attempts = new FailedAttempts();
    for (let i = 0; i < FAILURE_BURST; i++) {
      assert.equal(attempts.retryAfterMs('192.0.2.1', NOW), 0);
      attempts.failed('192.0.2.1', NOW);
    }
    const wait = attempts.retryAfterMs('192.0.2.1', NOW);
    assert.ok(wait > 0 && wait <= FAILURE_REFILL_MS, `wait ${wait}`);
    assert.equal(attempts.retryAfterMs('192.0.2.2', NOW), 0, 'another client is not held back');
    assert.equal(attempts.retryAfterMs('192.0.2.1', NOW + FAILURE_REFILL_MS), 0);
    attempts.failed('192.0.2.1', NOW + FAILURE_REFILL_MS);
    assert.ok(attempts.retryAfterMs('192.0.2.1', NOW + FAILURE_REFILL_MS) > 0, 'one refilled token is one more attempt');
  });

  it('splits the server-wide limit between the workers, never below it', () => {
    assert.deepEqual(perWorkerLimit(1), { burst: FAILURE_BURST, refillMs: FAILURE_REFILL_MS });
    assert.deepEqual(perWorkerLimit(2), { burst: 3, refillMs: 2 * FAILURE_REFILL_MS });
    assert.deepEqual(perWorkerLimit(5), { burst: 1, refillMs: 5 * FAILURE_REFILL_MS });
    assert.deepEqual(perWorkerLimit(16), { burst: 1, refillMs: 16 * FAILURE_REFILL_MS });
    const share = perWorkerLimit(2);
    const attempts = new FailedAttempts(share.burst, share.refillMs);
    for (let i = 0; i < share.burst; i++) attempts.failed('192.0.2.1', NOW);
    assert.ok(attempts.retryAfterMs('192.0.2.1', NOW) > FAILURE_REFILL_MS);
  });

  it('forgets a client once its bucket is full again, and never remembers more than its cap', () => {
    const attempts = new FailedAttempts();
    const client = (i: number): string => `10.0.${i >> 8}.${i & 255}`;
    for (let i = 0; i < 20_000; i++) for (let n = 0; n < FAILURE_BURST; n++) attempts.failed(client(i), NOW);
    // Every one of them is held back, but only the last 10 000 are remembered: the first may try again.
    assert.ok(attempts.retryAfterMs(client(19_999), NOW) > 0);
    assert.equal(attempts.retryAfterMs(client(0), NOW), 0);
    const full = new FailedAttempts();
    for (let n = 0; n < FAILURE_BURST; n++) full.failed('192.0.2.1', NOW);
    assert.equal(full.retryAfterMs('192.0.2.1', NOW + FAILURE_BURST * FAILURE_REFILL_MS), 0);
  });
});
