/**
 * The master's listening sockets, one per worker slot (src/master/listeners.ts):
 * the mirror of the kernel's SO_REUSEPORT group order (listen-group.ts), and
 * the real sockets with the real listen helper (native-helpers/build/miwidothttp-listen):
 * connections in turn over the slots, steered away from a slot nobody
 * accepts on while what is queued there waits for it, and a port another
 * process listens on refused even when that process uses SO_REUSEPORT.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { ListenerSpec } from '../../src/config/types.js';
import { ReuseportGroup } from '../../src/master/listen-group.js';
import { ListenerSet } from '../../src/master/listeners.js';
import { freePort, waitFor } from '../support/harness.js';

describe('the reuseport group mirror', () => {
  const listening = (...inodes: number[]): Set<number> => new Set(inodes);

  it('appends what starts listening; a socket that leaves takes the last one into its place (net/core/sock_reuseport.c)', () => {
    const group = new ReuseportGroup();
    for (const inode of [10, 11, 12, 13]) group.joined(inode);
    assert.deepEqual(group.positions(listening(10, 11, 12, 13)), [0, 1, 2, 3]);
    group.reconcile(listening(10, 12, 13));
    assert.equal(group.size, 3);
    // 13 moved into 11's place.
    assert.deepEqual(group.positions(listening(13)), [1]);
    assert.deepEqual(group.positions(listening(12)), [2]);
    group.joined(11);
    assert.deepEqual(group.positions(listening(11)), [3]);
  });

  it('several gone at once whose order does not matter: still certain', () => {
    const group = new ReuseportGroup();
    for (const inode of [1, 2, 3, 4]) group.joined(inode);
    // The two highest (a reload that lowered workers): the rest stay where they were, whatever the order.
    group.reconcile(listening(1, 2));
    assert.equal(group.certain, true);
    assert.deepEqual(group.positions(listening(1, 2)), [0, 1]);
  });

  it('several gone at once whose order decides where the others sit: no longer certain, and positions say so', () => {
    const group = new ReuseportGroup();
    for (const inode of [1, 2, 3, 4, 5]) group.joined(inode);
    group.reconcile(listening(1, 4, 5));
    assert.equal(group.certain, false);
    assert.equal(group.positions(listening(1)), null);
    // An empty group starts again known.
    group.reconcile(listening());
    assert.equal(group.certain, true);
  });
});

const spec = (port: number): ListenerSpec => ({
  id: `http 127.0.0.1:${port}`,
  purpose: 'sites',
  protocol: 'http',
  address: '127.0.0.1',
  port,
});

/** Accepts on each slot's socket (as the workers would) and counts what each takes. */
function acceptors(set: ListenerSet, port: number, slots: number[]): { counts: number[]; servers: net.Server[]; close(): void } {
  const counts = new Array<number>(slots.length).fill(0);
  const held: net.Socket[] = [];
  const servers = slots.map((slot, index) => {
    const [socket] = set.forSlot(slot, [spec(port).id]);
    return net
      .createServer((connection) => {
        counts[index]! += 1;
        held.push(connection);
      })
      .listen({ fd: socket!.handle.fd });
  });
  return {
    counts,
    servers,
    close() {
      for (const connection of held) connection.destroy();
      for (const server of servers) server.close();
    },
  };
}

function connectMany(port: number, count: number): Promise<net.Socket[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
          socket.on('error', reject);
        }),
    ),
  );
}

describe('a listener with a socket per slot', () => {
  it('hands a burst of connections from one client to the slots in turn', async () => {
    const port = await freePort();
    const set = new ListenerSet();
    set.bindMissing([spec(port)], 3);
    await set.listenBound(null);
    const accepting = acceptors(set, port, [0, 1, 2]);
    const clients = await connectMany(port, 60);
    await waitFor('every connection accepted', () => accepting.counts.reduce((a, b) => a + b) === 60);
    assert.deepEqual(accepting.counts, [20, 20, 20]);
    for (const client of clients) client.destroy();
    accepting.close();
    set.closeAll();
  });

  it('steers new connections away from a slot nobody accepts on; what is queued there waits for its acceptor', async () => {
    const port = await freePort();
    const set = new ListenerSet();
    set.bindMissing([spec(port)], 2);
    await set.listenBound(null);
    // Slot 1 has no acceptor yet (a dead worker): connections in turn, so some queue on its socket.
    const first = acceptors(set, port, [0]);
    const early = await connectMany(port, 10);
    await waitFor('slot 0 took its turns', () => first.counts[0] === 5);
    // The master steers away from slot 1: every new connection goes to slot 0.
    await set.steer(new Set([0]));
    const later = await connectMany(port, 10);
    await waitFor('slot 0 took every new one', () => first.counts[0] === 15);
    // Slot 1's replacement accepts what waited for it: nothing was lost.
    const second = acceptors(set, port, [1]);
    await waitFor('the queued connections accepted by slot 1', () => second.counts[0] === 5);
    await set.steer(null);
    for (const client of [...early, ...later]) client.destroy();
    first.close();
    second.close();
    set.closeAll();
  });

  it('refuses a port another process listens on, also one listening with SO_REUSEPORT as the same user', async () => {
    const port = await freePort();
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen({ port, host: '127.0.0.1', reusePort: true }, resolve));
    const set = new ListenerSet();
    assert.throws(() => set.bindMissing([spec(port)], 2), /cannot bind 127\.0\.0\.1:\d+: EADDRINUSE/);
    other.close();
  });

  it('a reload that adds slots binds their sockets; one that lowers them closes the surplus', async () => {
    const port = await freePort();
    const set = new ListenerSet();
    set.bindMissing([spec(port)], 2);
    await set.listenBound(null);
    const change = set.bindMissing([spec(port)], 4);
    assert.equal(change.slotSockets.length, 2);
    await set.listenBound(new Set([0, 1]));
    assert.ok(set.forSlot(3, [spec(port).id]).length === 1);
    set.retireSlots(2);
    assert.throws(() => set.forSlot(2, [spec(port).id]), /no socket for slot 2/);
    set.closeAll();
  });
});
