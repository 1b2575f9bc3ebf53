/**
 * The listener set. The master binds every socket and makes it listen, and
 * never accepts on it: the workers accept, each on its own inherited copy
 * (a descriptor at a fixed number, src/master/worker-process.ts), so the
 * kernel queues connections on the socket as long as any copy is open —
 * the master's, across every worker generation — and a reload or a crash
 * refuses no connection. Workers never bind or listen themselves (the
 * sandbox's seccomp filter lets them accept only on what they inherited).
 *
 * listen(2) without accept(2) cannot be had from libuv in this process: its
 * listen also starts polling, and Node accepts whatever arrives. So the
 * master hands the bound sockets to a short-lived child of its own
 * (listen-sockets.ts) that calls listen(2) on each and exits before its
 * event loop ever runs: the listening state belongs to the socket, shared by
 * every descriptor of it, and the child never accepted a connection.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import type { ListenerSpec } from '../config/types.js';

/** The child that calls listen(2) on the master's bound sockets (see the top of this file). */
const LISTEN_PROGRAM = path.join(path.dirname(fileURLToPath(import.meta.url)), 'listen-sockets.js');
/** listen(2)'s backlog: Node's own default for net.Server (the kernel caps it at somaxconn). */
export const LISTEN_BACKLOG = 511;

/** A bound libuv TCP handle (net's internal TCPWrap), listening once `listenBound` ran. */
export interface BoundHandle {
  readonly fd: number;
  getsockname(out: { address?: string; port?: number }): number;
  close(): void;
}

/**
 * `net._createServerHandle` binds without listening; it is what node:cluster's
 * primary uses for the same purpose. It returns a negative errno on failure.
 */
const createServerHandle = (
  net as unknown as {
    _createServerHandle(address: string | null, port: number | null, addressType: number | null, fd?: number): BoundHandle | number;
  }
)._createServerHandle;

export interface BoundListener {
  readonly spec: ListenerSpec;
  readonly handle: BoundHandle;
}

/** How a socket systemd passed is matched to a listener: "address:port". */
const socketKey = (address: string | undefined, port: number | undefined): string => `${address}:${port}`;

export class ListenerSet {
  private readonly bound = new Map<string, BoundListener>();
  /** Sockets systemd passed (socket activation), by "address:port", not yet matched to a listener. */
  private readonly activated = new Map<string, BoundHandle>();
  /** Listener ids served by a socket systemd passed: never closed, only given back to the pool. */
  private readonly activatedIds = new Set<string>();
  /** Listener ids whose socket listens (systemd's do from the start). */
  private readonly listening = new Set<string>();

  /**
   * Takes the listening sockets systemd passed (LISTEN_FDS): each is matched
   * later, by address and port, to the listener the config names, instead
   * of binding one. Returns "address:port" per socket.
   */
  adopt(fds: readonly number[]): string[] {
    const taken: string[] = [];
    for (const fd of fds) {
      const handle = createServerHandle(null, null, null, fd);
      const bound: { address?: string; port?: number } = {};
      const error = typeof handle === 'number' ? handle : handle.getsockname(bound);
      if (typeof handle === 'number' || error !== 0)
        throw new Error(
          `socket activation: fd ${fd} is not a TCP listening socket (${getSystemErrorName(typeof handle === 'number' ? handle : error)})`,
        );
      const key = socketKey(bound.address, bound.port);
      this.activated.set(key, handle);
      taken.push(key);
    }
    return taken;
  }

  /** Sockets systemd passed that no listener of the config claims. */
  unclaimedActivated(): string[] {
    return [...this.activated.keys()];
  }

  list(): BoundListener[] {
    return [...this.bound.values()];
  }

  /**
   * Bind whatever `specs` adds. On any failure the sockets bound by this call
   * are closed again and the error names the listener, so a refused reload
   * leaves the set as it was.
   */
  bindMissing(specs: readonly ListenerSpec[]): { added: string[] } {
    const added: string[] = [];
    for (const spec of specs) {
      if (this.bound.has(spec.id)) continue;
      const activated = this.activated.get(socketKey(spec.address, spec.port));
      if (activated !== undefined) {
        this.activated.delete(socketKey(spec.address, spec.port));
        this.activatedIds.add(spec.id);
        this.listening.add(spec.id);
        this.bound.set(spec.id, { spec, handle: activated });
        added.push(spec.id);
        continue;
      }
      const handle = createServerHandle(spec.address, spec.port, net.isIP(spec.address));
      // libuv defers EADDRINUSE from bind() to the first listen() or
      // getsockname(); unchecked, a worker's listen() on the unbound socket
      // would quietly pick a random port on every interface.
      const bound: { address?: string; port?: number } = {};
      const error = typeof handle === 'number' ? handle : handle.getsockname(bound);
      if (error !== 0 || typeof handle === 'number' || bound.port !== spec.port) {
        if (typeof handle !== 'number') handle.close();
        for (const id of added) this.close(id);
        throw new Error(`cannot bind ${spec.address}:${spec.port}: ${error !== 0 ? getSystemErrorName(error) : 'bound elsewhere'}`);
      }
      this.bound.set(spec.id, { spec, handle });
      added.push(spec.id);
    }
    return { added };
  }

  /**
   * Makes every bound socket that does not listen yet listen, through the
   * listen child; on failure the error names the listener (the caller
   * closes what it bound).
   */
  async listenBound(): Promise<void> {
    await this.listen([...this.bound.values()].filter((listener) => !this.listening.has(listener.spec.id)));
  }

  /**
   * listen(2) again on every socket. A worker can stop a shared listening
   * socket for every holder (shutdown(SHUT_RD), or connect() with AF_UNSPEC;
   * native-helpers/SECURITY.md); the socket keeps its port, and listen
   * makes it listen again. Run after a worker is condemned.
   */
  async relistenAll(): Promise<void> {
    await this.listen([...this.bound.values()]);
  }

  private async listen(pending: BoundListener[]): Promise<void> {
    if (pending.length === 0) return;
    const child = spawn(process.execPath, [LISTEN_PROGRAM, String(LISTEN_BACKLOG), String(pending.length)], {
      stdio: ['ignore', 'ignore', 'pipe', ...pending.map((listener) => listener.handle.fd)],
      env: {},
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (code !== 0) {
      // "<index> <errno name>" per socket that failed.
      const [index, name] = stderr.trim().split('\n')[0]?.split(' ') ?? [];
      const failed = pending[Number(index)]?.spec;
      throw new Error(
        failed === undefined
          ? `cannot listen: ${stderr.trim() || `the listen child exited with ${code}`}`
          : `cannot listen on ${failed.address}:${failed.port}: ${name}`,
      );
    }
    for (const listener of pending) this.listening.add(listener.spec.id);
  }

  /** Close the master's copy of every listener not in `specs`. */
  closeExcept(specs: readonly ListenerSpec[]): string[] {
    const keep = new Set(specs.map((spec) => spec.id));
    const removed = [...this.bound.keys()].filter((id) => !keep.has(id));
    for (const id of removed) this.close(id);
    return removed;
  }

  close(id: string): void {
    const listener = this.bound.get(id);
    this.bound.delete(id);
    this.listening.delete(id);
    if (listener === undefined) return;
    if (this.activatedIds.delete(id)) {
      // systemd's socket: back to the pool, for a later config that names it again.
      this.activated.set(socketKey(listener.spec.address, listener.spec.port), listener.handle);
      return;
    }
    listener.handle.close();
  }

  closeAll(): void {
    for (const id of [...this.bound.keys()]) this.close(id);
    for (const handle of this.activated.values()) handle.close();
    this.activated.clear();
  }
}
