/**
 * The peer of a connection as the pipeline should see it: the PROXY
 * protocol source when a trusted proxy sent a header for this connection,
 * else the TCP peer. Written once per connection by server.ts.
 */
import type { Socket } from 'node:net';

const proxiedSource = new WeakMap<Socket, string>();

export function setProxiedSource(socket: Socket, ip: string): void {
  proxiedSource.set(socket, ip);
}

export function peerAddress(socket: Socket): string {
  return proxiedSource.get(socket) ?? socket.remoteAddress ?? '';
}
