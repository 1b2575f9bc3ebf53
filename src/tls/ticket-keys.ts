/**
 * Session-ticket keys and the session ID context that every worker shares,
 * so that a client resumes its TLS session on whichever worker the kernel
 * hands its next connection to.
 *
 * The master owns one `TicketKeyRing`, sends `current()` and
 * `sessionIdContext(configId)` to the workers, and sends the new key after
 * each `rotate()`. Workers pass them to `server.setTicketKeys(key)` and to the
 * `sessionIdContext` option of every secure context (the server's and each
 * SNI context), and never generate their own.
 *
 * Why one key and not two. Node's `server.setTicketKeys(keys)` takes exactly
 * one 48-byte buffer (16 bytes key name, 16 bytes HMAC secret, 16 bytes AES
 * key). When a ticket arrives, Node's built-in callback accepts it only if
 * its key name equals the current key's name; any other ticket falls back to
 * a full handshake. The OpenSSL hook that would let a server decrypt with an
 * older key while encrypting with the new one (SSL_CTX_set_tlsext_ticket_key_cb,
 * as nginx's list of `ssl_session_ticket_key` files uses) is not exposed by
 * Node's public API. So a rotation invalidates every outstanding ticket.
 * `previous()` is kept for the day such an API exists, and so a caller can
 * tell whether a rotation happened, but it cannot be installed today.
 *
 * What a rotation costs, and the interval chosen. A ticket is only honoured
 * for the server's `sessionTimeout` (Node's default is 300 s) anyway, so a
 * rotation only loses the resumptions of tickets issued in the last few
 * minutes before it: one extra full handshake for those clients. On the other
 * side, the ticket key protects every session it encrypted: for TLS 1.2 the
 * ticket holds the master secret, so whoever steals the key can decrypt those
 * recorded connections (RFC 5077 §5.5 and §8; TLS 1.3 resumption with
 * psk_dhe_ke limits this to impersonating the resumption). Rotating every
 * 12 hours bounds that exposure to half a day while losing, at the 300 s
 * timeout, well under 1% of resumptions (300 s / 12 h ≈ 0.7%). Keys live only
 * in memory and are never written to disk, so a restart also rotates them.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** Bytes in one Node ticket key (`server.setTicketKeys`). */
export const TICKET_KEY_BYTES = 48;

/** How often the master should call `rotate()`; see the module comment. */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000;

/** Length of the derived session ID context; OpenSSL allows at most 32 bytes. */
const SESSION_ID_CONTEXT_CHARS = 32;

/**
 * Ticket keys for all workers of one master: the current key and the one it
 * replaced. Returned buffers are copies, so a caller cannot alter the ring.
 */
export class TicketKeyRing {
  readonly #secret: Buffer;
  #current: Buffer;
  #previous: Buffer | null = null;
  #rotatedAtMs: number;

  /**
   * @param secret server-wide secret for `sessionIdContext` (default: 32 random
   *   bytes, so the context changes when the master restarts, as the keys do).
   * @param nowMs clock reading for `rotatedAtMs`.
   */
  constructor(secret: Buffer = randomBytes(32), nowMs: number = Date.now()) {
    if (secret.length < 16) throw new Error('ticket key ring secret must be at least 16 bytes');
    this.#secret = Buffer.from(secret);
    this.#current = randomBytes(TICKET_KEY_BYTES);
    this.#rotatedAtMs = nowMs;
  }

  /** The key to give `server.setTicketKeys` now. */
  current(): Buffer {
    return Buffer.from(this.#current);
  }

  /** The key `rotate()` last replaced, or null before the first rotation. */
  previous(): Buffer | null {
    return this.#previous === null ? null : Buffer.from(this.#previous);
  }

  /** When the current key was made, in ms since the epoch. */
  get rotatedAtMs(): number {
    return this.#rotatedAtMs;
  }

  /** Whether the current key is at least `intervalMs` old. */
  isRotationDue(nowMs: number = Date.now(), intervalMs: number = TICKET_KEY_ROTATION_MS): boolean {
    return nowMs - this.#rotatedAtMs >= intervalMs;
  }

  /** Makes a fresh current key, keeps the old one as `previous()`, and returns the new key. */
  rotate(nowMs: number = Date.now()): Buffer {
    this.#previous = this.#current;
    this.#current = randomBytes(TICKET_KEY_BYTES);
    this.#rotatedAtMs = nowMs;
    return this.current();
  }

  /**
   * Makes `key` (made elsewhere: a cluster shares one key between nodes) the
   * current key, keeping the old one as `previous()`.
   */
  install(key: Buffer, rotatedAtMs: number): void {
    if (key.length !== TICKET_KEY_BYTES) throw new Error(`a ticket key is ${TICKET_KEY_BYTES} bytes`);
    if (key.equals(this.#current)) return;
    this.#previous = this.#current;
    this.#current = Buffer.from(key);
    this.#rotatedAtMs = rotatedAtMs;
  }

  /**
   * The `sessionIdContext` every worker must use for the TLS configuration
   * `configId`: 32 hex characters of HMAC-SHA256(secret, configId).
   *
   * OpenSSL resumes a session only when the session ID context it was made
   * under equals the server's. `tls.createServer` defaults it to a hash of
   * `process.argv`, which differs between processes started with different
   * arguments, and `tls.createSecureContext` (used for SNI contexts) sets
   * none; either way resumption across workers fails. Deriving it from the
   * master's secret gives every worker the same value, and including the
   * config id keeps sessions made under one TLS configuration from resuming
   * under another. HMAC, not sha256(secret + id), so that no two
   * (secret, id) splits of the same bytes collide.
   */
  sessionIdContext(configId: string): string {
    return createHmac('sha256', this.#secret).update(configId, 'utf8').digest('hex').slice(0, SESSION_ID_CONTEXT_CHARS);
  }
}
