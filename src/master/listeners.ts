/**
 * The listener set. The master binds every socket and makes it listen, and
 * never accepts on it: the workers accept, each on its own inherited copy
 * (a descriptor at a fixed number, src/master/worker-process.ts), so the
 * kernel queues connections on a socket as long as any copy is open — the
 * master's, across every worker generation — and a reload or a crash
 * refuses no connection. Workers never bind or listen themselves (the
 * sandbox's seccomp filter lets them accept only on what they inherited).
 *
 * Each listener has one socket per worker slot, all bound to its address
 * with SO_REUSEPORT, and a program on the group hands new connections to
 * the sockets in turn, so to the workers in turn, instead of handing a
 * burst to whichever worker wakes first on one shared socket (docs/
 * spreading.md says why this design). A worker in slot k accepts on the
 * sockets of slot k, whatever its generation: a reload with the same worker
 * count hands the old worker's queue to the new one without a gap. The
 * same program steers new connections away from a socket nobody accepts on
 * (a dead slot waiting for its replacement, a slot a reload is retiring, a
 * new slot whose worker is not ready), so what is queued there waits for
 * its worker and nothing new joins it (listen-group.ts,
 * native-helpers/listen.c). A socket systemd passed without ReusePort=
 * cannot have siblings: every worker accepts on it.
 *
 * listen(2) without accept(2) cannot be had from libuv in this process: its
 * listen also starts polling, and Node accepts whatever arrives. So the
 * master runs native-helpers/build/miwidothttp-listen, which calls
 * listen(2) on the descriptors it inherits, attaches or removes the
 * steering program, and exits: the listening state belongs to the socket,
 * shared by every descriptor of it, and the helper never accepts.
 */
import { spawn } from 'node:child_process';
import { fstatSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import type { ListenerSpec } from '../config/types.js';
import { listeningInodes, ReuseportGroup } from './listen-group.js';

/** native-helpers/build/miwidothttp-listen (see the top of this file). */
const LISTEN_HELPER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native-helpers/build/miwidothttp-listen');
/** listen(2)'s backlog: Node's own default for net.Server (the kernel caps it at somaxconn). */
export const LISTEN_BACKLOG = 511;
/** libuv's flag for uv_tcp_bind: SO_REUSEPORT before bind (tcp_wrap's constants.UV_TCP_REUSEPORT). */
const UV_TCP_REUSEPORT = 2;

/** A bound libuv TCP handle (net's internal TCPWrap), listening once made to. */
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
    _createServerHandle(
      address: string | null,
      port: number | null,
      addressType: number | null,
      fd?: number,
      flags?: number,
    ): BoundHandle | number;
  }
)._createServerHandle;

/** One listener's socket for one worker slot. */
export interface BoundListener {
  readonly spec: ListenerSpec;
  readonly handle: BoundHandle;
}

interface SlotSocket {
  readonly handle: BoundHandle;
  /** Its inode: how /proc/net/tcp names it, also once the master has closed its copy. */
  readonly inode: number;
}

interface Listener {
  readonly spec: ListenerSpec;
  /** Its socket per slot; a shared listener has one, for every slot. */
  readonly sockets: SlotSocket[];
  /** A socket systemd passed without SO_REUSEPORT: every worker accepts on it. */
  readonly shared: boolean;
  /** From systemd (socket activation): never closed, only given back to the pool. */
  readonly activated: boolean;
  readonly group: ReuseportGroup;
}

/** How a socket systemd passed is matched to a listener: "address:port". */
const socketKey = (address: string | undefined, port: number | undefined): string => `${address}:${port}`;

/** Sockets a bindMissing call added, so that a refused reload can take them back. */
export interface BindChange {
  readonly added: string[];
  readonly slotSockets: { id: string; socket: SlotSocket }[];
}

const inodeOf = (handle: BoundHandle): number => fstatSync(handle.fd).ino;

export class ListenerSet {
  private readonly bound = new Map<string, Listener>();
  /** Sockets systemd passed (socket activation), by "address:port", not yet matched to a listener. */
  private readonly activated = new Map<string, BoundHandle>();
  /** Steering runs one at a time; a change meanwhile runs once more after it. */
  #steering: Promise<void> = Promise.resolve();
  /** The slots new connections may go to, as last asked (null: every slot). */
  #allowed: ReadonlySet<number> | null = null;

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

  /** Every listener with the socket of slot 0 (what `status` shows). */
  list(): BoundListener[] {
    return [...this.bound.values()].map((listener) => ({ spec: listener.spec, handle: listener.sockets[0]!.handle }));
  }

  /** The sockets a worker in `slot` accepts on, for the listeners `ids` names, in config order. */
  forSlot(slot: number, ids: readonly string[]): BoundListener[] {
    return ids.flatMap((id) => {
      const listener = this.bound.get(id);
      if (listener === undefined) return [];
      const socket = listener.shared ? listener.sockets[0] : listener.sockets[slot];
      if (socket === undefined) throw new Error(`listener ${id} has no socket for slot ${slot}`);
      return [{ spec: listener.spec, handle: socket.handle }];
    });
  }

  /**
   * A worker is about to start on `sockets`: its sandbox helper makes each
   * listen (`--listen-fd`), so one a worker had disconnected joins its group
   * again at the end. The mirrors take note now, while no worker of the
   * slot runs to change anything in between (listen-group.ts).
   */
  handingOver(sockets: readonly BoundListener[]): void {
    const listening = listeningInodes();
    const given = new Set(sockets.map((socket) => socket.handle.fd));
    for (const listener of this.bound.values()) {
      listener.group.reconcile(listening);
      for (const socket of listener.sockets)
        if (given.has(socket.handle.fd) && !listening.has(socket.inode)) listener.group.joined(socket.inode);
    }
  }

  /**
   * Binds whatever `specs` adds, and for every listener a socket per slot
   * up to `slots`. On any failure the sockets bound by this call are closed
   * again and the error names the listener, so a refused reload leaves the
   * set as it was.
   */
  bindMissing(specs: readonly ListenerSpec[], slots = 1): BindChange {
    const change: BindChange = { added: [], slotSockets: [] };
    try {
      for (const spec of specs) {
        let listener = this.bound.get(spec.id);
        if (listener === undefined) {
          listener = this.#claim(spec);
          this.bound.set(spec.id, listener);
          change.added.push(spec.id);
        }
        while (!listener.shared && listener.sockets.length < slots) {
          const socket = this.#bindSibling(spec);
          listener.sockets.push(socket);
          change.slotSockets.push({ id: spec.id, socket });
        }
      }
    } catch (error) {
      this.undo(change);
      throw error;
    }
    return change;
  }

  /** Takes back what a bindMissing call added (a reload that did not happen). */
  undo(change: BindChange): void {
    for (const { id, socket } of change.slotSockets.reverse()) {
      const listener = this.bound.get(id);
      if (listener === undefined) continue;
      const at = listener.sockets.indexOf(socket);
      if (at !== -1) listener.sockets.splice(at, 1);
      socket.handle.close();
    }
    for (const id of change.added) this.close(id);
  }

  /**
   * Makes every socket that does not listen yet listen, and steers new
   * connections to the slots `allowed` names (null: every socket); on
   * failure the error names the listener (the caller closes what it bound).
   */
  listenBound(allowed: ReadonlySet<number> | null = this.#allowed): Promise<void> {
    return this.#run(allowed);
  }

  /** New connections from now on go to the sockets of the slots `allowed` names (null: every socket). */
  steer(allowed: ReadonlySet<number> | null): Promise<void> {
    return this.#run(allowed);
  }

  /**
   * listen(2) again on every socket. A worker can stop a listening socket it
   * holds (shutdown(SHUT_RD), or connect() with AF_UNSPEC;
   * native-helpers/SECURITY.md); the socket keeps its port, and listen
   * makes it listen again (joining its group again, at the end). Run after
   * a worker is condemned.
   */
  relistenAll(): Promise<void> {
    return this.#run(this.#allowed);
  }

  /**
   * Closes the master's copy of the sockets of slots `slots` and above
   * (a reload lowered `workers`): each leaves its group once the retiring
   * workers holding it have exited too.
   */
  retireSlots(slots: number): void {
    for (const listener of this.bound.values()) {
      if (listener.shared) continue;
      for (const socket of listener.sockets.splice(Math.max(1, slots))) socket.handle.close();
    }
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
    if (listener.activated) {
      // systemd's socket: back to the pool, for a later config that names it again; its siblings are ours.
      this.activated.set(socketKey(listener.spec.address, listener.spec.port), listener.sockets[0]!.handle);
      for (const socket of listener.sockets.slice(1)) socket.handle.close();
      return;
    }
    for (const socket of listener.sockets) socket.handle.close();
  }

  closeAll(): void {
    for (const id of [...this.bound.keys()]) this.close(id);
    for (const handle of this.activated.values()) handle.close();
    this.activated.clear();
  }

  /** The first socket of a new listener: systemd's, or a fresh one on a port nobody listens on. */
  #claim(spec: ListenerSpec): Listener {
    const key = socketKey(spec.address, spec.port);
    const activated = this.activated.get(key);
    if (activated !== undefined) {
      this.activated.delete(key);
      const socket = { handle: activated, inode: inodeOf(activated) };
      const group = new ReuseportGroup();
      group.joined(socket.inode);
      // A sibling binds only next to a socket with SO_REUSEPORT (systemd's ReusePort=yes); else the one socket is shared.
      const sibling = createServerHandle(spec.address, spec.port, net.isIP(spec.address), undefined, UV_TCP_REUSEPORT);
      const error = typeof sibling === 'number' ? sibling : sibling.getsockname({});
      if (typeof sibling !== 'number') sibling.close();
      return { spec, sockets: [socket], shared: error !== 0, activated: true, group };
    }
    // A port another process listens on is refused, as without SO_REUSEPORT: this socket has no
    // SO_REUSEPORT, so even another root server with it (which our siblings could join) fails the check.
    const probe = createServerHandle(spec.address, spec.port, net.isIP(spec.address));
    const bound: { address?: string; port?: number } = {};
    // libuv defers EADDRINUSE from bind() to the first listen() or getsockname().
    const error = typeof probe === 'number' ? probe : probe.getsockname(bound);
    if (typeof probe !== 'number') probe.close();
    if (error !== 0 || bound.port !== spec.port)
      throw new Error(`cannot bind ${spec.address}:${spec.port}: ${error !== 0 ? getSystemErrorName(error) : 'bound elsewhere'}`);
    return { spec, sockets: [this.#bindSibling(spec)], shared: false, activated: false, group: new ReuseportGroup() };
  }

  #bindSibling(spec: ListenerSpec): SlotSocket {
    const handle = createServerHandle(spec.address, spec.port, net.isIP(spec.address), undefined, UV_TCP_REUSEPORT);
    const bound: { address?: string; port?: number } = {};
    const error = typeof handle === 'number' ? handle : handle.getsockname(bound);
    if (error !== 0 || typeof handle === 'number' || bound.port !== spec.port) {
      if (typeof handle !== 'number') handle.close();
      throw new Error(`cannot bind ${spec.address}:${spec.port}: ${error !== 0 ? getSystemErrorName(error) : 'bound elsewhere'}`);
    }
    return { handle, inode: inodeOf(handle) };
  }

  /** One run of the listen helper at a time, in the order asked. */
  #run(allowed: ReadonlySet<number> | null): Promise<void> {
    this.#allowed = allowed;
    const run = this.#steering.catch(() => undefined).then(() => this.#listenAndSteer());
    this.#steering = run;
    return run;
  }

  /**
   * One run of the listen helper over every socket: each that does not
   * listen (new, or stopped by a worker) listens and joins its group at the
   * end, in slot order; then each group gets its steering.
   */
  async #listenAndSteer(): Promise<void> {
    const listening = listeningInodes();
    const fds: number[] = [];
    const groups: string[] = [];
    const owners: Listener[] = [];
    const allowed = this.#allowed;
    for (const listener of this.bound.values()) {
      listener.group.reconcile(listening);
      for (const socket of listener.sockets) if (!listening.has(socket.inode)) listener.group.joined(socket.inode);
      let steering = '';
      if (!listener.shared && listener.group.size > 1) {
        const inodes = new Set(listener.sockets.flatMap((socket, slot) => (allowed === null || allowed.has(slot) ? [socket.inode] : [])));
        const positions = listener.group.positions(inodes);
        // Nothing to steer to, or the order unknown: the kernel's own spreading by hash over every socket.
        if (positions !== null && positions.length > 0) steering = `@${listener.group.size}:${positions.join(',')}`;
      }
      groups.push(`${listener.sockets.length}${steering}`);
      for (const socket of listener.sockets) {
        fds.push(socket.handle.fd);
        owners.push(listener);
      }
    }
    if (fds.length === 0) return;
    const child = spawn(LISTEN_HELPER, [String(LISTEN_BACKLOG), ...groups], {
      stdio: ['ignore', 'ignore', 'pipe', ...fds],
      env: {},
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (code === 0) return;
    // The sockets after the one that failed did not join: the mirrors drop them (a suffix of each: exact).
    const now = listeningInodes();
    for (const listener of new Set(owners)) listener.group.reconcile(now);
    // "<index> <errno name>" for the descriptor that failed.
    const [index, name] = stderr.trim().split('\n')[0]?.split(' ') ?? [];
    const failed = owners[Number(index)]?.spec;
    throw new Error(
      failed === undefined
        ? `cannot listen: ${stderr.trim() || `the listen helper exited with ${code}`}`
        : `cannot listen on ${failed.address}:${failed.port}: ${name}`,
    );
  }
}
