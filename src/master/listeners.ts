/**
 * The listener set. The master binds every socket and never listens on it:
 * a process that calls listen() on a socket it also passes to workers takes
 * a share of the connections, and the master never serves them. Workers call
 * listen() on their copy and the kernel queues connections on the socket as
 * long as any copy is open — the master's, across every worker generation,
 * so a reload or a crash refuses no connection. This is what node:cluster
 * does internally in its shared-handle mode, without cluster's rule that
 * the handle closes when its last worker leaves.
 */
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { ListenerSpec } from '../config/types.js';

/** A bound, not-listening libuv TCP handle (net's internal TCPWrap). */
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
