/**
 * Access lists, bans and rate limiting per request ([security.ddos],
 * [security.rate_limiting]), on the client IP the client-ip stage resolved.
 *
 * The TCP peer was checked at accept already (server.ts); this stage sees
 * the client behind a trusted proxy, and bans set while a keep-alive
 * connection was open. Whitelisted clients pass untouched.
 *
 * Rate limiting spends tokens leased from the master's bucket for this
 * client (src/master/abuse/client-limits.ts): the common case is a local
 * decrement; an empty lease asks the master, and the request waits (unread)
 * for the answer. A lease grows while it is spent quickly and what is left
 * of it goes back to the master after LEASE_TTL_MS, so that tokens parked
 * here do not starve the same client's connections on another worker.
 */
import type { CompiledConfig } from '../../config/types.js';
import { CidrSet, clientKey } from '../../net/cidr.js';
import { memoBounded } from '../memo.js';
import { HttpError } from '../errors.js';
import type { MasterPort } from '../master-link.js';
import type { Stage } from './stage.js';

/** Unspent tokens go back to the master this long after their lease. */
export const LEASE_TTL_MS = 250;
/** Client addresses whose key (clientKey) is remembered. */
const CLIENT_KEYS = 4096;
/**
 * The most tokens a worker asks for at once; the master caps every lease at
 * 1/8 of the client's burst, which is what bounds the tokens one worker can
 * hold unspent. At 64 a busy client cost one round trip to the master per
 * 64 requests (with the requests behind it waiting): ~0.7 us of the
 * master's CPU per request in the benchmark; at 1024, 1/16 of that.
 */
const MAX_WANT = 1024;

interface Lease {
  tokens: number;
  grantedAt: number;
  want: number;
  /** Refused without asking until then (the master said when a token is due). */
  deniedUntil: number;
  /** Requests refused here since the last report: breaches the master counts towards a ban. */
  refused: number;
  waiting: ((retryAfterMs: number) => void)[] | null;
}

/** 0: the request may go on; else how many ms until the client may retry. */
type Verdict = number;

export class RequestTokens {
  readonly #leases = new Map<string, Lease>();
  readonly #sweep: NodeJS.Timeout;

  constructor(private readonly link: MasterPort) {
    this.#sweep = setInterval(() => this.#giveBack(), LEASE_TTL_MS);
    this.#sweep.unref();
  }

  take(ip: string): Verdict | Promise<Verdict> {
    let lease = this.#leases.get(ip);
    if (lease === undefined) {
      lease = { tokens: 0, grantedAt: -Infinity, want: 1, deniedUntil: 0, refused: 0, waiting: null };
      this.#leases.set(ip, lease);
    }
    if (lease.tokens >= 1) {
      lease.tokens -= 1;
      return 0;
    }
    const now = performance.now();
    if (now < lease.deniedUntil) {
      lease.refused += 1;
      return Math.ceil(lease.deniedUntil - now);
    }
    const entry = lease;
    return new Promise((resolve) => {
      (entry.waiting ??= []).push(resolve);
      if (entry.waiting.length === 1) this.#ask(ip, entry);
    });
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#giveBack(true);
  }

  #ask(ip: string, lease: Lease): void {
    const now = performance.now();
    // A client that spent its last lease within the lease's life gets a bigger one.
    lease.want = now - lease.grantedAt < LEASE_TTL_MS ? Math.min(lease.want * 2, MAX_WANT) : 1;
    const want = Math.min(MAX_WANT, Math.max(lease.want, lease.waiting?.length ?? 1));
    void this.link.lease(ip, want).then((grant) => {
      lease.grantedAt = performance.now();
      lease.tokens += grant.granted;
      const waiting = lease.waiting ?? [];
      lease.waiting = null;
      if (grant.granted === 0) {
        lease.deniedUntil = lease.grantedAt + grant.retryAfterMs;
        // The master counted the first refusal when it said no.
        lease.refused += waiting.length - 1;
        for (const resolve of waiting) resolve(grant.retryAfterMs);
        return;
      }
      let served = 0;
      while (served < waiting.length && lease.tokens >= 1) {
        lease.tokens -= 1;
        waiting[served++]!(0);
      }
      if (served < waiting.length) {
        lease.waiting = waiting.slice(served);
        this.#ask(ip, lease);
      }
    });
  }

  /** Unspent tokens past their lease, and local refusals, go to the master; idle entries go. */
  #giveBack(all = false): void {
    const now = performance.now();
    for (const [ip, lease] of this.#leases) {
      if (lease.waiting !== null) continue;
      const expired = all || now - lease.grantedAt >= LEASE_TTL_MS;
      const unspent = expired ? Math.floor(lease.tokens) : 0;
      if (unspent > 0 || lease.refused > 0) this.link.report(ip, unspent, lease.refused);
      lease.refused = 0;
      if (expired) {
        lease.tokens = 0;
        if (now >= lease.deniedUntil) this.#leases.delete(ip);
      }
    }
  }
}

export function accessStage(config: CompiledConfig, link: MasterPort): Stage & { close(): void } {
  const whitelist = new CidrSet(config.access.whitelist);
  const blacklist = new CidrSet(config.access.blacklist);
  const tokens = config.rateLimit === null ? null : new RequestTokens(link);
  const listed = whitelist.size + blacklist.size > 0;

  /**
   * The key of each client address, parsed and formatted once per address
   * rather than once per request (a keep-alive client sends many).
   * Bounded: addresses are the clients' to choose, and the table starts
   * over when full.
   */
  const keyOf = memoBounded(clientKey, CLIENT_KEYS);

  const refuse = (retryAfterMs: number): HttpError =>
    new HttpError('RATE_LIMITED', `retry after ${retryAfterMs} ms`, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) });

  return {
    name: 'access',
    onRequest({ ctx }) {
      // The common case, no lists, no bans, no rate limit: nothing to look up.
      if (!listed && tokens === null && !link.anyBans()) return;
      const ip = keyOf(ctx.clientIp);
      // Not an address (a Unix socket peer): nothing to list, limit or ban.
      if (ip === null || whitelist.has(ip)) return;
      if (blacklist.has(ip)) throw new HttpError('CLIENT_BLOCKED', 'blacklisted');
      if (link.isBanned(ip)) throw new HttpError('CLIENT_BLOCKED', 'banned');
      if (tokens === null) return;
      const verdict = tokens.take(ip);
      if (typeof verdict === 'number') {
        if (verdict > 0) throw refuse(verdict);
        return;
      }
      return verdict.then((retryAfterMs) => {
        if (retryAfterMs > 0) throw refuse(retryAfterMs);
      });
    },
    close: () => tokens?.close(),
  };
}
