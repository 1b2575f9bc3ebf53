/**
 * One listener's SO_REUSEPORT group as the kernel keeps it, mirrored in the
 * master: which socket sits at which position. A classic BPF program
 * attached to the group (native-helpers/listen.c) answers each new
 * connection with a position, so steering connections away from a slot
 * needs that slot's position.
 *
 * The kernel's rules (net/core/sock_reuseport.c): a socket that starts
 * listening is appended (`__reuseport_add_sock`); one that stops (closed by
 * every holder, or disconnected with shutdown or connect(AF_UNSPEC)) leaves,
 * and the socket at the last position takes its place
 * (`__reuseport_detach_sock`). The master makes every socket listen itself,
 * in an order it chooses, so it appends as the kernel does. It cannot see a
 * socket leave: a retired socket leaves when the last worker holding it
 * exits, a hostile worker may disconnect its own. So the mirror is
 * reconciled with the sockets /proc/net/tcp shows listening before every
 * use. When several left since the last look and the order they left in
 * would change where the others sit, the mirror cannot know: it says so
 * (`positions` returns null) and the master leaves the spreading to the
 * kernel's hash, which still only picks listening sockets.
 */
import { readFileSync } from 'node:fs';

/** Beyond this many departures at once, every order is not worth trying. */
const MAX_ORDERS_TRIED = 6;

/** Inodes of every TCP socket listening in this network namespace (/proc/net/tcp and tcp6, state 0A). */
export function listeningInodes(): Set<number> {
  const inodes = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const row of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = row.trim().split(/\s+/);
      if (fields[3] === '0A' && fields[9] !== undefined) inodes.add(Number(fields[9]));
    }
  }
  return inodes;
}

/** The order the kernel keeps after `departed` leave `order` one by one, in that order. */
function afterDepartures(order: readonly number[], departed: readonly number[]): number[] {
  const result = [...order];
  for (const inode of departed) {
    const at = result.indexOf(inode);
    if (at === -1) continue;
    result[at] = result[result.length - 1]!;
    result.pop();
  }
  return result;
}

function* permutations(items: readonly number[]): Generator<number[]> {
  if (items.length <= 1) {
    yield [...items];
    return;
  }
  for (let i = 0; i < items.length; i++)
    for (const rest of permutations([...items.slice(0, i), ...items.slice(i + 1)])) yield [items[i]!, ...rest];
}

export class ReuseportGroup {
  /** Socket inodes, by position. */
  #order: number[] = [];
  /** False once departures left the order unknowable (see the file comment). */
  #certain = true;

  /** Sockets in the group now, listening or not yet noticed gone. */
  get size(): number {
    return this.#order.length;
  }

  get certain(): boolean {
    return this.#certain;
  }

  /** `inode` started listening: it takes the next position. */
  joined(inode: number): void {
    if (!this.#order.includes(inode)) this.#order.push(inode);
  }

  /** Whether `inode` is in the group as the mirror knows it. */
  has(inode: number): boolean {
    return this.#order.includes(inode);
  }

  /** The sockets of the group that no longer listen have left it (see the file comment). */
  reconcile(listening: ReadonlySet<number>): void {
    const departed = this.#order.filter((inode) => !listening.has(inode));
    if (departed.length === 0) return;
    if (departed.length > 1 && this.#certain) {
      if (departed.length > MAX_ORDERS_TRIED) this.#certain = false;
      else {
        const first = afterDepartures(this.#order, departed).join(',');
        for (const order of permutations(departed))
          if (afterDepartures(this.#order, order).join(',') !== first) {
            this.#certain = false;
            break;
          }
      }
    }
    this.#order = afterDepartures(this.#order, departed);
    // An empty group is a new group: its order is known again.
    if (this.#order.length === 0) this.#certain = true;
  }

  /** The positions of `inodes` in the group, ascending; null when the order is not known. */
  positions(inodes: ReadonlySet<number>): number[] | null {
    if (!this.#certain) return null;
    const positions: number[] = [];
    for (const [position, inode] of this.#order.entries()) if (inodes.has(inode)) positions.push(position);
    return positions;
  }
}
