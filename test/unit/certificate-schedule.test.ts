/**
 * When the master renews a certificate it obtained, and how it backs off
 * after a failed order (src/master/certificate-manager.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renewalDue, retryDelay } from '../../src/master/certificate-manager.js';

const DAY = 24 * 60 * 60 * 1000;

describe('renewal schedule', () => {
  it('renews renewal_days_before expiry for a 90-day certificate', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date(notBefore.getTime() + 90 * DAY);
    assert.equal(renewalDue(notBefore, notAfter, 30).toISOString(), new Date(notAfter.getTime() - 30 * DAY).toISOString());
  });

  it('honours a renewal_days_before up to half the lifetime', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date(notBefore.getTime() + 90 * DAY);
    assert.equal(renewalDue(notBefore, notAfter, 45).getTime(), notAfter.getTime() - 45 * DAY);
  });

  it('renews at a third of the lifetime before expiry when renewal_days_before is more than half of it (short-lived certificates)', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const sixDays = new Date(notBefore.getTime() + 6 * DAY);
    assert.equal(renewalDue(notBefore, sixDays, 30).toISOString(), new Date(sixDays.getTime() - 2 * DAY).toISOString());
    const ninetySeconds = new Date(notBefore.getTime() + 90_000);
    assert.equal(renewalDue(notBefore, ninetySeconds, 30).getTime(), notBefore.getTime() + 60_000);
  });
});

describe('retry backoff', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const middle = (): number => 0.5;

  it('doubles from one minute, with jitter, up to six hours', () => {
    assert.equal(retryDelay(1, now, null, middle), 60_000);
    assert.equal(retryDelay(2, now, null, middle), 120_000);
    assert.equal(retryDelay(30, now, null, middle), 6 * 60 * 60 * 1000);
    assert.equal(
      retryDelay(1, now, null, () => 0),
      48_000,
    );
    assert.equal(
      retryDelay(1, now, null, () => 1),
      72_000,
    );
  });

  it('retries sooner than the backoff when the certificate served expires soon, never below 5 s', () => {
    assert.equal(retryDelay(10, now, new Date(now + 60_000), middle), 20_000);
    assert.equal(retryDelay(10, now, new Date(now + 3_000), middle), 5_000);
  });

  it('backs off alone once the certificate has expired (a CA limits failed validations per hour)', () => {
    assert.equal(retryDelay(3, now, new Date(now - 1000), middle), 240_000);
  });
});
