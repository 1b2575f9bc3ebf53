/**
 * Choosing an upstream target and taking failing ones out of rotation,
 * following nginx's upstream module so an operator's intuition carries over:
 *
 * - round_robin: smooth weighted round robin (ngx_http_upstream_round_robin.c,
 *   ngx_http_upstream_get_peer). Weights 5,1,1 give a a b a c a a, spread
 *   out rather than in bursts.
 * - least_connections: fewest in-flight requests divided by weight; ties are
 *   broken by the same smooth weighted round robin among the tied targets
 *   (ngx_http_upstream_least_conn_module.c).
 * - passive health (max_fails / fail_timeout): `maxFails` failures, each
 *   within `failTimeoutMs` of the previous one, take a target out for
 *   `failTimeoutMs`; the next success clears its count. `maxFails` = 0
 *   disables marking, and with a single target nothing is ever marked
 *   (nginx: "If there is only a single server in a group, max_fails,
 *   fail_timeout and slow_start parameters are ignored").
 *
 * - active health (health-checks.ts): a target failing its checks is out of
 *   rotation like a marked one, until it passes again.
 *
 * When every target that may still be tried is marked down, selection falls
 * back to the marked-down ones instead of answering 502 at once. nginx
 * answers 502 "no live upstreams" for that one request and then clears every
 * failure count; trying instead gives the request the chance nginx's next
 * request would get, and a refused connect costs a millisecond. The cost is
 * bounded: each target is tried at most once per request.
 *
 * nginx also lowers a failing peer's effective weight and restores it
 * gradually; that is not reproduced here: a target is either in rotation
 * with its configured weight or marked down.
 */

export type LoadBalancing = 'round_robin' | 'least_connections';

export interface FailurePolicy {
  /** Failures within failTimeoutMs that mark a target down; 0 disables marking. */
  readonly maxFails: number;
  readonly failTimeoutMs: number;
}

/** One upstream target's balancing and health state. */
export class UpstreamPeer {
  /** Requests dispatched to this target and not yet finished. */
  active = 0;
  /** Smooth weighted round robin accumulator (nginx current_weight). */
  currentWeight = 0;
  /** Consecutive failures, each within failTimeoutMs of the previous one. */
  fails = 0;
  lastFailureMs = 0;
  /** Epoch ms until which the target is out of rotation; 0 when it is in. */
  downUntilMs = 0;
  /** What the active health checks say (health-checks.ts); true without them. */
  healthy = true;

  constructor(readonly weight: number) {
    if (!Number.isInteger(weight) || weight < 1) throw new RangeError(`upstream weight must be a positive integer, got ${weight}`);
  }

  /** Out of rotation: failing its health checks, or marked by failed requests (passive). */
  isDown(nowMs: number): boolean {
    return !this.healthy || this.downUntilMs > nowMs;
  }
}

export class UpstreamBalancer<P extends UpstreamPeer> {
  readonly #peers: readonly P[];
  readonly #leastConnections: boolean;
  readonly #marking: boolean;
  readonly #policy: FailurePolicy;

  constructor(peers: readonly P[], loadBalancing: LoadBalancing, policy: FailurePolicy) {
    if (peers.length === 0) throw new RangeError('an upstream group needs at least one target');
    this.#peers = peers;
    this.#leastConnections = loadBalancing === 'least_connections';
    this.#marking = policy.maxFails > 0 && peers.length > 1;
    this.#policy = policy;
  }

  get peers(): readonly P[] {
    return this.#peers;
  }

  /**
   * The target for the next attempt, never one in `tried`; null once every
   * target has been tried. Targets marked down are only chosen when no
   * other untried target is left (see the module comment).
   */
  select(tried: ReadonlySet<P> | null, nowMs: number): P | null {
    if (this.#peers.length === 1) {
      const only = this.#peers[0]!;
      return tried?.has(only) ? null : only;
    }
    // Live targets first, whichever check took the others out (failed requests or health checks).
    const live = this.#pick(tried, nowMs, false);
    if (live !== null) return live;
    return this.#pick(tried, nowMs, true);
  }

  /**
   * Record a failed attempt (connect error, reset before the response,
   * timeout). Returns true when this failure takes the target out.
   */
  markFailure(peer: P, nowMs: number): boolean {
    if (!this.#marking) return false;
    if (nowMs - peer.lastFailureMs > this.#policy.failTimeoutMs) peer.fails = 0;
    peer.fails++;
    peer.lastFailureMs = nowMs;
    if (peer.fails < this.#policy.maxFails) return false;
    const wasDown = peer.isDown(nowMs);
    peer.downUntilMs = nowMs + this.#policy.failTimeoutMs;
    return !wasDown;
  }

  /** Record that the target answered: its failure count starts over. */
  markSuccess(peer: P): void {
    if (peer.fails !== 0 || peer.downUntilMs !== 0) {
      peer.fails = 0;
      peer.downUntilMs = 0;
    }
  }

  #pick(tried: ReadonlySet<P> | null, nowMs: number, includeDown: boolean): P | null {
    const peers = this.#peers;
    if (this.#leastConnections) {
      // First pass: the lowest active/weight, compared by cross-multiplying
      // so no division is needed, and how many targets share it.
      let best: P | null = null;
      let tied = 0;
      for (const peer of peers) {
        if (!this.#eligible(peer, tried, nowMs, includeDown)) continue;
        if (best === null || peer.active * best.weight < best.active * peer.weight) {
          best = peer;
          tied = 1;
        } else if (peer.active * best.weight === best.active * peer.weight) {
          tied++;
        }
      }
      if (best === null || tied === 1) return best;
      const threshold = best;
      return this.#smoothWeighted(tried, nowMs, includeDown, (peer) => peer.active * threshold.weight === threshold.active * peer.weight);
    }
    return this.#smoothWeighted(tried, nowMs, includeDown, null);
  }

  /** nginx's smooth weighted round robin over the eligible targets. */
  #smoothWeighted(tried: ReadonlySet<P> | null, nowMs: number, includeDown: boolean, among: ((peer: P) => boolean) | null): P | null {
    let best: P | null = null;
    let total = 0;
    for (const peer of this.#peers) {
      if (!this.#eligible(peer, tried, nowMs, includeDown)) continue;
      if (among !== null && !among(peer)) continue;
      peer.currentWeight += peer.weight;
      total += peer.weight;
      if (best === null || peer.currentWeight > best.currentWeight) best = peer;
    }
    if (best !== null) best.currentWeight -= total;
    return best;
  }

  #eligible(peer: P, tried: ReadonlySet<P> | null, nowMs: number, includeDown: boolean): boolean {
    if (tried?.has(peer)) return false;
    return includeDown || !peer.isDown(nowMs);
  }
}
