/**
 * The control socket: how `miwidothttp reload|stop|status` reach the running
 * master and get an answer (a signal cannot carry one back). A Unix socket
 * with mode 0600 beside the pid file: only its owner (root, in production)
 * can connect. One JSON request line in, one JSON answer line out.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { parseClusterRequest, type ClusterRequest } from '../cluster/control.js';

export type ControlRequest =
  | { command: 'status' }
  | { command: 'reload' }
  | { command: 'stop' }
  | { command: 'ban_list' }
  | { command: 'certs' }
  | { command: 'ban_add'; ip: string; seconds?: number; reason: string }
  | { command: 'ban_remove'; ip: string }
  | ClusterRequest;

/** Longest ban an admin may set: a year. */
export const MAX_BAN_SECONDS = 365 * 86400;

const MAX_REQUEST_BYTES = 1024;

export function parseControlRequest(text: string): ControlRequest | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object') return null;
  const request = value as Record<string, unknown>;
  const command = request.command;
  const isText = (field: unknown, max: number): field is string => typeof field === 'string' && field.length <= max;
  switch (command) {
    case 'status':
    case 'reload':
    case 'stop':
    case 'ban_list':
    case 'certs':
      return { command };
    case 'ban_add': {
      const { ip, seconds, reason } = request;
      if (!isText(ip, 64) || !isText(reason ?? '', 200)) return null;
      if (seconds !== undefined && (!Number.isSafeInteger(seconds) || (seconds as number) < 1 || (seconds as number) > MAX_BAN_SECONDS))
        return null;
      return { command, ip, reason: (reason as string | undefined) ?? '', ...(seconds !== undefined && { seconds: seconds as number }) };
    }
    case 'ban_remove':
      return isText(request.ip, 64) ? { command, ip: request.ip } : null;
    case 'cluster':
      return parseClusterRequest(request);
    default:
      return null;
  }
}

export function startControlServer(
  socketPath: string,
  log: Logger,
  handle: (request: ControlRequest) => Promise<unknown>,
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
      if (buffered.length > MAX_REQUEST_BYTES) {
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

/** Client side, for the CLI: send one request, read one answer. */
export function controlRequest(socketPath: string, request: ControlRequest, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from the master within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(answer));
      } catch {
        reject(new Error('malformed answer from the master'));
      }
    });
  });
}
