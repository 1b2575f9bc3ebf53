/**
 * The control socket: how `miwidothttp reload|stop|status` reach the running
 * master and get an answer (a signal cannot carry one back). A Unix socket
 * with mode 0600 beside the pid file: only its owner (root, in production)
 * can connect. One JSON request line in, one JSON answer line out; the
 * requests and answers are catalogued in ipc/control.ts, carried out by
 * control-commands.ts.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { MAX_CONTROL_REQUEST_BYTES, parseControlRequest, type ControlAnswer, type ControlRequest } from '../ipc/control.js';

export function startControlServer(
  socketPath: string,
  log: Logger,
  handle: (request: ControlRequest) => Promise<ControlAnswer>,
): Promise<net.Server> {
  try {
    unlinkSync(socketPath); // left by a master that died; the pid file check ran first
  } catch {
    // No stale socket.
  }
  const server = net.createServer((socket) => {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_CONTROL_REQUEST_BYTES) {
        socket.destroy();
        return;
      }
      const newline = buffered.indexOf('\n');
      if (newline === -1) return;
      socket.pause();
      socket.setTimeout(0);
      const request = parseControlRequest(buffered.slice(0, newline));
      if (request === null) {
        socket.end(`${JSON.stringify({ ok: false, reason: 'unknown request' })}\n`);
        return;
      }
      handle(request).then(
        (answer) => socket.end(`${JSON.stringify(answer)}\n`),
        (error: unknown) => {
          log.error({ err: error }, 'control request failed');
          socket.end(`${JSON.stringify({ ok: false, reason: 'internal error' })}\n`);
        },
      );
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const previous = process.umask(0o177);
    server.listen(socketPath, () => {
      process.umask(previous);
      chmodSync(socketPath, 0o600);
      server.off('error', reject);
      resolve(server);
    });
  });
}
