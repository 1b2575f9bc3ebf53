/**
 * Basic authentication (RFC 7617) against bcrypt lines of an htpasswd file
 * (`htpasswd -B`), which the master read and sent with the config: the
 * worker never opens the file.
 *
 * - Credentials are checked in a thread of their own (bcrypt-thread.ts): a
 *   bcrypt verification costs milliseconds on purpose, and a browser sends
 *   the same credentials with every request, so an answer is remembered for
 *   VERIFIED_TTL_MS under an HMAC of hash and password (a key made at start,
 *   never the password itself). At most MAX_PENDING verifications wait; past
 *   that the answer is 503 rather than an ever longer queue.
 * - An unknown user costs the same verification as a known one (against a
 *   hash of a random password), so timing does not tell which users exist.
 * - The header is read within MAX_HEADER_CHARS; anything that is not
 *   `Basic <base64 of user:password in UTF-8>` is malformed.
 */
import { nodeCrypto } from '../../node-builtins.js';
import { Worker } from 'node:worker_threads';

const { createHmac, randomBytes } = nodeCrypto;

/** A verified (or refused) credential is trusted this long without bcrypt. */
export const VERIFIED_TTL_MS = 60_000;
const MAX_REMEMBERED = 4096;
const MAX_PENDING = 64;
const MAX_HEADER_CHARS = 1024;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** bcrypt of a random password, cost 5 (what htpasswd -B writes): what an unknown user is checked against. */
const DECOY_HASH = '$2b$05$RmrhBa3HJMzazeizh/3QH.nZWIDmaxKpaF1Mp7pXRhYywMjfgM5zu';

export type AuthOutcome =
  | { readonly outcome: 'ok'; readonly user: string }
  | { readonly outcome: 'missing' }
  | { readonly outcome: 'failed'; readonly detail: string }
  | { readonly outcome: 'busy' };

/** The user and password of an Authorization header, null without Basic credentials, or why it is malformed. */
export function parseBasic(header: string | undefined): { user: string; password: string } | null | string {
  if (header === undefined) return null;
  const space = header.indexOf(' ');
  const scheme = space === -1 ? header : header.slice(0, space);
  // Another scheme (Bearer, ...) carries no Basic credentials: the answer is the challenge.
  if (scheme.toLowerCase() !== 'basic') return null;
  if (header.length > MAX_HEADER_CHARS) return 'credentials too long';
  const token = header.slice(space + 1).trim();
  if (!BASE64.test(token) || token.length % 4 !== 0) return 'not base64';
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(token, 'base64'));
  } catch {
    return 'not UTF-8';
  }
  const colon = text.indexOf(':');
  if (colon === -1) return 'no ":" between user and password';
  // RFC 7617 §2: no control characters in either.
  if (/[\x00-\x1f\x7f]/.test(text)) return 'control character';
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** The thread and the memory of answers, shared by every site of a worker. */
export class BcryptVerifier {
  #thread: Worker | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, (ok: boolean) => void>();
  readonly #remembered = new Map<string, { ok: boolean; until: number }>();
  readonly #key = randomBytes(32);

  /** ok, refused, or null: too many waiting already. */
  verify(password: string, hash: string): boolean | Promise<boolean> | null {
    const key = createHmac('sha256', this.#key).update(hash).update('\0').update(password).digest('base64');
    const now = performance.now();
    const known = this.#remembered.get(key);
    if (known !== undefined && known.until > now) return known.ok;
    if (this.#pending.size >= MAX_PENDING) return null;
    const id = this.#nextId++;
    return new Promise<boolean>((resolve) => {
      this.#pending.set(id, (ok) => {
        if (this.#remembered.size >= MAX_REMEMBERED) this.#remembered.delete(this.#remembered.keys().next().value!);
        this.#remembered.set(key, { ok, until: performance.now() + VERIFIED_TTL_MS });
        resolve(ok);
      });
      this.#threadNow().postMessage({ id, password, hash });
    });
  }

  close(): Promise<void> {
    const thread = this.#thread;
    this.#thread = null;
    for (const resolve of this.#pending.values()) resolve(false);
    this.#pending.clear();
    return thread === null ? Promise.resolve() : thread.terminate().then(() => undefined);
  }

  #threadNow(): Worker {
    if (this.#thread === null) {
      const thread = new Worker(new URL('./bcrypt-thread.js', import.meta.url));
      thread.unref();
      thread.on('message', (answer: { id: number; ok: boolean }) => {
        const resolve = this.#pending.get(answer.id);
        this.#pending.delete(answer.id);
        resolve?.(answer.ok === true);
      });
      thread.on('error', () => this.#fail(thread));
      thread.on('exit', () => this.#fail(thread));
      this.#thread = thread;
    }
    return this.#thread;
  }

  /** The thread died: what waited is refused, the next verification starts a new one. */
  #fail(thread: Worker): void {
    if (this.#thread !== thread) return;
    this.#thread = null;
    for (const resolve of this.#pending.values()) resolve(false);
    this.#pending.clear();
  }
}

/** One site's Basic authentication: its realm and users. */
export class BasicAuth {
  /** WWW-Authenticate of every 401 (RFC 7617 §2.1: the charset says the credentials are UTF-8). */
  readonly challenge: string;
  readonly #users: ReadonlyMap<string, string>;

  constructor(
    realm: string,
    users: readonly (readonly [string, string])[],
    private readonly verifier: BcryptVerifier,
  ) {
    this.challenge = `Basic realm="${realm}", charset="UTF-8"`;
    this.#users = new Map(users);
  }

  check(header: string | undefined): AuthOutcome | Promise<AuthOutcome> {
    const credentials = parseBasic(header);
    if (credentials === null) return { outcome: 'missing' };
    if (typeof credentials === 'string') return { outcome: 'failed', detail: `malformed Authorization: ${credentials}` };
    const hash = this.#users.get(credentials.user);
    const verdict = this.verifier.verify(credentials.password, hash ?? DECOY_HASH);
    const user = credentials.user.slice(0, 64);
    const outcome = (ok: boolean): AuthOutcome =>
      ok && hash !== undefined
        ? { outcome: 'ok', user: credentials.user }
        : {
            outcome: 'failed',
            detail: hash === undefined ? `unknown user ${JSON.stringify(user)}` : `wrong password for ${JSON.stringify(user)}`,
          };
    if (verdict === null) return { outcome: 'busy' };
    return typeof verdict === 'boolean' ? outcome(verdict) : verdict.then(outcome);
  }
}
