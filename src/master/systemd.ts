/**
 * Life under systemd: the notify protocol (sd_notify(3)) and socket
 * activation (sd_listen_fds(3)).
 *
 * Notifications go through native-helpers/build/miwidothttp-notify (Node has
 * no unix datagram sockets), one process per message, in order. READY=1 only
 * once every worker of the first generation is ready; a reload says
 * RELOADING=1 with MONOTONIC_USEC, then READY=1 (and STATUS= with the reason
 * when it was refused); a stop says STOPPING=1; WATCHDOG=1 goes out at half
 * of WATCHDOG_USEC while the master's loop runs and a worker serves.
 * Without NOTIFY_SOCKET every call is a no-op.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

const NOTIFY_HELPER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native-helpers/build/miwidothttp-notify');
/** First fd systemd passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;
/** More sockets than this is not a configuration, it is a mistake. */
const MAX_LISTEN_FDS = 64;

/** CLOCK_MONOTONIC in microseconds: libuv's hrtime reads that clock. */
const monotonicMicros = (): string => String(process.hrtime.bigint() / 1000n);

export class SystemdNotifier {
  readonly #socket = process.env.NOTIFY_SOCKET;
  #queue: Promise<void> = Promise.resolve();
  #watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly log: Logger) {
    // Only the master speaks to systemd: nothing it starts may inherit the socket's name.
    delete process.env.NOTIFY_SOCKET;
  }

  get enabled(): boolean {
    return this.#socket !== undefined && this.#socket !== '';
  }

  ready(status: string): Promise<void> {
    return this.#send({ READY: '1', STATUS: status, MAINPID: String(process.pid) });
  }

  reloading(): Promise<void> {
    return this.#send({ RELOADING: '1', MONOTONIC_USEC: monotonicMicros(), STATUS: 'reloading' });
  }

  stopping(): Promise<void> {
    this.stopWatchdog();
    return this.#send({ STOPPING: '1', STATUS: 'stopping' });
  }

  /**
   * Pings at half the interval systemd asked for (WATCHDOG_USEC, for this
   * pid: WATCHDOG_PID), as long as `healthy()` says so. A master whose loop
   * is stuck sends nothing, and systemd restarts the service.
   */
  startWatchdog(healthy: () => boolean): void {
    const usec = Number(process.env.WATCHDOG_USEC);
    const forPid = process.env.WATCHDOG_PID;
    delete process.env.WATCHDOG_USEC;
    delete process.env.WATCHDOG_PID;
    if (!this.enabled || !Number.isSafeInteger(usec) || usec <= 0 || (forPid !== undefined && Number(forPid) !== process.pid)) return;
    const intervalMs = Math.max(100, Math.floor(usec / 2000));
    this.#watchdog = setInterval(() => {
      if (healthy()) void this.#send({ WATCHDOG: '1' });
      else this.log.warn('watchdog: no worker is serving; not telling systemd all is well');
    }, intervalMs);
    this.#watchdog.unref();
  }

  stopWatchdog(): void {
    if (this.#watchdog !== null) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  #send(fields: Record<string, string>): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const message = Object.entries(fields)
      // A newline in a value would start a field of its own.
      .map(([name, value]) => `${name}=${value.replace(/[\r\n]+/g, ' ').slice(0, 1000)}`)
      .join('\n');
    this.#queue = this.#queue.then(
      () =>
        new Promise<void>((resolve) => {
          execFile(
            NOTIFY_HELPER,
            [String(process.pid), message],
            { env: { NOTIFY_SOCKET: this.#socket }, timeout: 5000 },
            (error, _stdout, stderr) => {
              if (error) this.log.error({ err: error, stderr: stderr.trim() }, 'cannot notify systemd');
              resolve();
            },
          );
        }),
    );
    return this.#queue;
  }
}

/**
 * The listening sockets systemd passed (LISTEN_FDS, for this pid:
 * LISTEN_PID), as file descriptors. The variables are removed from the
 * environment either way: nothing the master starts may believe the
 * sockets are its own.
 */
export function activationSockets(): number[] {
  const count = Number(process.env.LISTEN_FDS);
  const forPid = Number(process.env.LISTEN_PID);
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDNAMES;
  if (!Number.isSafeInteger(count) || count <= 0 || count > MAX_LISTEN_FDS || forPid !== process.pid) return [];
  return Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
}
