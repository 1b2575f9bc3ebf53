/**
 * Run by the master (src/master/listeners.ts), never imported: calls
 * listen(2) on each bound socket it inherited at fd 3, 4, ... and exits in
 * the same turn, before its event loop could poll, so it never accepts a
 * connection. argv: the backlog, the number of sockets. A failure prints "<index> <errno name>"
 * on stderr and exits 1.
 */
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

interface ServerHandle {
  listen(backlog: number): number;
}
const createServerHandle = (
  net as unknown as { _createServerHandle(address: null, port: null, addressType: null, fd: number): ServerHandle | number }
)._createServerHandle;

const backlog = Number(process.argv[2]);
const count = Number(process.argv[3]);
let failed = false;
for (let index = 0; index < count; index++) {
  const handle = createServerHandle(null, null, null, 3 + index);
  const error = typeof handle === 'number' ? handle : handle.listen(backlog);
  if (error !== 0) {
    process.stderr.write(`${index} ${getSystemErrorName(error)}\n`);
    failed = true;
    break;
  }
}
process.exit(failed ? 1 : 0);
