/**
 * Who may see the dashboard: a client that shows the token (an
 * `Authorization: Bearer` header, RFC 6750 §2.1) or the cookie the login
 * form sets once the token was typed in. The worker holds the token's
 * SHA-256 and the cookie key, never the token.
 *
 * The cookie is `v1.<expiry ms>.<HMAC-SHA256(key, "v1.<expiry ms>")>`:
 * stateless, so it holds at whichever worker the next request lands, and
 * it ends at its expiry or when the token changes (the key is derived from
 * it). HttpOnly (no script reads it), SameSite=Strict (no other site's page
 * sends it), Secure when the page came over HTTPS (RFC 6265 §4.1.2).
 *
 * Failed attempts are limited per client address: a guess costs a token
 * from a small bucket, and an empty bucket refuses every attempt without
 * checking it. Each worker keeps its own buckets (no question to the master
 * per login) with its share of the server-wide limit: FAILURE_BURST
 * failures, refilled one per FAILURE_REFILL_MS, split between the workers
 * (see perWorkerLimit).
 */
import { nodeCrypto } from '../../node-builtins.js';

const { createHash, createHmac, timingSafeEqual } = nodeCrypto;

export const SESSION_COOKIE = 'miwidothttp_dashboard';
/** A login lasts this long; then the form asks again. */
export const SESSION_MS = 12 * 3_600_000;
/** Server-wide: failed attempts a client may make at once, and how often one more comes back (5 a minute). */
export const FAILURE_BURST = 5;
export const FAILURE_REFILL_MS = 12_000;

/**
 * One worker's share of the server-wide limit: a client whose connections
 * spread over every worker fails at most `workers × burst` times at once
 * (FAILURE_BURST when it divides evenly, never fewer) and then one more
 * every FAILURE_REFILL_MS over all of them.
 */
export function perWorkerLimit(workers: number): { burst: number; refillMs: number } {
  const count = Math.max(1, workers);
  return { burst: Math.ceil(FAILURE_BURST / count), refillMs: FAILURE_REFILL_MS * count };
}
/** Clients whose failures are remembered at most; the oldest are forgotten first. */
const MAX_TRACKED_CLIENTS = 10_000;

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Whether `token` is the dashboard's: compares digests, in constant time. */
export function tokenMatches(token: string, tokenSha256: string): boolean {
  return timingSafeEqual(sha256(token), Buffer.from(tokenSha256, 'hex'));
}

/**
 * The token of an Authorization header, or null when the header is absent,
 * of another scheme, or not a b64token. The scheme is case-insensitive
 * (RFC 9110 §11.1).
 */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  return match === null ? null : match[1]!;
}

const signature = (payload: string, sessionKey: string): string =>
  createHmac('sha256', Buffer.from(sessionKey, 'hex')).update(payload).digest('hex');

/** The Set-Cookie value of a new login. */
export function sessionCookie(sessionKey: string, now: number, secure: boolean): string {
  const payload = `v1.${now + SESSION_MS}`;
  const attributes = [`Max-Age=${SESSION_MS / 1000}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])];
  return [`${SESSION_COOKIE}=${payload}.${signature(payload, sessionKey)}`, ...attributes].join('; ');
}

/** The Set-Cookie value that ends a login. */
export function expiredCookie(secure: boolean): string {
  return [`${SESSION_COOKIE}=`, 'Max-Age=0', 'Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])].join('; ');
}

/** Whether a Cookie header carries a login that is ours, signed and not expired. */
export function validSession(cookieHeader: string | undefined, sessionKey: string, now: number): boolean {
  if (cookieHeader === undefined) return false;
  for (const pair of cookieHeader.split(';')) {
    const [name, value] = pair.trim().split('=', 2);
    if (name !== SESSION_COOKIE || value === undefined) continue;
    const match = /^(v1\.([0-9]{1,15}))\.([0-9a-f]{64})$/.exec(value);
    if (match === null) continue;
    const expiry = Number(match[2]);
    // A cookie lasting longer than a login can is not one we signed (or the clock jumped back): refused.
    if (expiry <= now || expiry > now + SESSION_MS) continue;
    if (timingSafeEqual(Buffer.from(match[3]!, 'hex'), Buffer.from(signature(match[1]!, sessionKey), 'hex'))) return true;
  }
  return false;
}

/** Failed token attempts per client: a small token bucket each. */
export class FailedAttempts {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly burst = FAILURE_BURST,
    private readonly refillMs = FAILURE_REFILL_MS,
  ) {}

  /** 0 when `ip` may try now, else the milliseconds until it may. */
  retryAfterMs(ip: string, now: number): number {
    const bucket = this.#refilled(ip, now);
    return bucket === null || bucket.tokens >= 1 ? 0 : Math.ceil((1 - bucket.tokens) * this.refillMs);
  }

  failed(ip: string, now: number): void {
    const bucket = this.#refilled(ip, now) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    this.#buckets.delete(ip);
    this.#buckets.set(ip, bucket);
    if (this.#buckets.size > MAX_TRACKED_CLIENTS) this.#buckets.delete(this.#buckets.keys().next().value as string);
  }

  /** The bucket refilled up to now; null (and forgotten) once full again. */
  #refilled(ip: string, now: number): { tokens: number; at: number } | null {
    const bucket = this.#buckets.get(ip);
    if (bucket === undefined) return null;
    bucket.tokens = Math.min(this.burst, bucket.tokens + Math.max(0, now - bucket.at) / this.refillMs);
    bucket.at = now;
    if (bucket.tokens >= this.burst) {
      this.#buckets.delete(ip);
      return null;
    }
    return bucket;
  }
}
