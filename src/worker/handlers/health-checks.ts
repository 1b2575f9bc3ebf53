/**
 * Active health checks (health_check = { path, interval, timeout, fails,
 * passes }), as nginx Plus's health_check and HAProxy's check do them: every
 * `interval` a GET of `path` goes to each target over its own pool (same
 * TLS, same protocol as the requests); a 2xx or 3xx answer within `timeout`
 * passes, anything else fails. `fails` failures in a row take the target out
 * of rotation, `passes` passes in a row bring it back; targets start in.
 *
 * Each worker checks on its own (the master never talks to upstreams: it is
 * the privileged process, and an upstream's answer is input like any other),
 * so a target is probed once per interval per worker; the first probe of
 * each target comes at a random point of the first interval, so workers and
 * targets do not probe in step.
 */
import type { Logger } from 'pino';
import type { HealthCheckSpec } from '../../config/types.js';
import type { UpstreamTarget } from './upstream-target.js';

/** A body longer than this is not read to its end: the status has answered already. */
const MAX_HEALTH_BODY_BYTES = 64 * 1024;

interface TargetHealth {
  readonly target: UpstreamTarget;
  /** Passes (> 0) or failures (< 0) in a row. */
  streak: number;
  inFlight: boolean;
}

export class HealthChecks {
  readonly #targets: TargetHealth[];
  readonly #timers: NodeJS.Timeout[] = [];
  #closed = false;

  constructor(
    targets: readonly UpstreamTarget[],
    private readonly spec: HealthCheckSpec,
    private readonly log: Logger | null,
  ) {
    this.#targets = targets.map((target) => ({ target, streak: 0, inFlight: false }));
  }

  start(): void {
    for (const health of this.#targets) {
      const first = setTimeout(() => {
        void this.#probe(health);
        const every = setInterval(() => void this.#probe(health), this.spec.intervalMs);
        every.unref();
        this.#timers.push(every);
      }, Math.random() * this.spec.intervalMs);
      first.unref();
      this.#timers.push(first);
    }
  }

  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
  }

  async #probe(health: TargetHealth): Promise<void> {
    // One probe per target at a time: a slow upstream is not piled onto.
    if (health.inFlight || this.#closed) return;
    health.inFlight = true;
    const { target } = health;
    let failure: string | null = null;
    try {
      const response = await target.pool.request({
        path: target.pathPrefix + this.spec.path,
        method: 'GET',
        headers: { host: target.hostHeader, 'user-agent': 'miwidothttp-health-check' },
        headersTimeout: this.spec.timeoutMs,
        bodyTimeout: this.spec.timeoutMs,
        signal: AbortSignal.timeout(this.spec.timeoutMs),
        ...(target.servername !== undefined && { servername: target.servername }),
      } as Parameters<typeof target.pool.request>[0]);
      let read = 0;
      for await (const chunk of response.body) {
        read += (chunk as Buffer).length;
        if (read > MAX_HEALTH_BODY_BYTES) break;
      }
      if (read > MAX_HEALTH_BODY_BYTES) response.body.destroy();
      if (response.statusCode < 200 || response.statusCode >= 400) failure = `status ${response.statusCode}`;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      failure = typeof code === 'string' ? code : (error as Error).name;
    } finally {
      health.inFlight = false;
    }
    if (this.#closed) return;
    this.#record(health, failure);
  }

  #record(health: TargetHealth, failure: string | null): void {
    const { target } = health;
    if (failure === null) {
      health.streak = health.streak > 0 ? health.streak + 1 : 1;
      if (!target.healthy && health.streak >= this.spec.passes) {
        target.healthy = true;
        this.log?.warn({ event: 'upstream.healthy', target: target.label, passes: health.streak }, 'upstream target back in rotation');
      }
      return;
    }
    health.streak = health.streak < 0 ? health.streak - 1 : -1;
    if (target.healthy && -health.streak >= this.spec.fails) {
      target.healthy = false;
      this.log?.warn(
        { event: 'upstream.unhealthy', target: target.label, fails: -health.streak, reason: failure },
        'upstream target out of rotation: health check failed',
      );
    }
  }
}
