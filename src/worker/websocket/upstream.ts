/**
 * The proxy's side of a WebSocket upgrade once the upstream answered 101:
 * the answer is checked (RFC 6455 §4.1: a 101 with Upgrade: websocket and
 * the Sec-WebSocket-Accept of the key sent), passed to the client (101 over
 * HTTP/1.1; 200 over HTTP/2, RFC 8441 §5), and the two connections joined
 * in a tunnel (tunnel.ts).
 *
 * Upstream, the handshake is always HTTP/1.1 (handlers/upstream-target.ts):
 * a client over HTTP/2 sends no key (RFC 8441 §5), so the proxy makes one.
 */
import { nodeCrypto } from '../../node-builtins.js';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { endToEndResponseHeaders } from '../handlers/hop-by-hop.js';
import { http2Stream } from '../http2-request.js';
import { acceptFor, upgradeTokens } from './handshake.js';
import type { WebSocketTunnels } from './tunnel.js';

const { randomBytes } = nodeCrypto;

/** A WebSocket handshake in flight: over which protocol the client came, and the key sent upstream. */
export interface WebSocketUpgrade {
  readonly http2: boolean;
  readonly key: string;
}

/** A key for the upstream handshake of a client that sent none (RFC 6455 §4.1: 16 random bytes, base64). */
export function upstreamKey(): string {
  return randomBytes(16).toString('base64');
}

/** Responses whose connection became a tunnel: the HTTP/1.1 upgrade path must not end their socket (server.ts). */
const tunnelled = new WeakSet<object>();

export function isTunnelled(res: ServerResponse): boolean {
  return tunnelled.has(res);
}

export interface UpgradeAnswer {
  readonly upgrade: WebSocketUpgrade;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly clientIp: string;
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly socket: Duplex;
  readonly tunnels: WebSocketTunnels;
}

/** Checks the upstream's 101, answers the client and opens the tunnel; or says what was wrong with the 101. */
export function completeUpgrade(answer: UpgradeAnswer): { ok: true } | { ok: false; problem: string } {
  const { upgrade, req, res, headers } = answer;
  if (answer.statusCode !== 101) return { ok: false, problem: `switched protocols with ${answer.statusCode}` };
  if (!upgradeTokens(typeof headers.upgrade === 'string' ? headers.upgrade : undefined).includes('websocket'))
    return { ok: false, problem: 'a 101 without Upgrade: websocket' };
  if (headers['sec-websocket-accept'] !== acceptFor(upgrade.key)) return { ok: false, problem: 'a 101 with a wrong Sec-WebSocket-Accept' };
  // Sec-WebSocket-Protocol, -Extensions, Set-Cookie and the rest pass as any response field does.
  const fields = endToEndResponseHeaders(headers);
  let client: Duplex;
  if (upgrade.http2) {
    const stream = http2Stream(req);
    if (stream === null || stream.destroyed) return { ok: false, problem: 'the client stream is gone' };
    // RFC 8441 §5: a 2xx accepts; Sec-WebSocket-Accept is not used over HTTP/2.
    const kept: string[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] !== 'sec-websocket-accept') kept.push(fields[i]!, fields[i + 1]!);
    res.writeHead(200, kept);
    client = stream;
  } else {
    const socket = res.socket;
    if (socket == null || socket.destroyed) return { ok: false, problem: 'the client connection is gone' };
    res.writeHead(101, ['connection', 'Upgrade', 'upgrade', 'websocket', ...fields]);
    // The head goes out now; the response is over, the connection is the tunnel's from here.
    tunnelled.add(res);
    res.end();
    client = socket;
  }
  answer.tunnels.open(client, answer.socket as Socket, answer.clientIp);
  return { ok: true };
}
