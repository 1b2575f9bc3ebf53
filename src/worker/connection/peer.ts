/**
 * The peer of a connection as the pipeline should see it: the PROXY
 * protocol source when a trusted proxy sent a header for this connection,
 * else the TCP peer. Written once per connection by the accept gate (gate.ts).
 */
import type { Socket } from 'node:net';

const proxiedSource = new WeakMap<Socket, string>();

export function setProxiedSource(socket: Socket, ip: string): void {
  proxiedSource.set(socket, ip);
}

/**
 * Over TLS, requests arrive on the TLS socket, while the PROXY header was
 * read from the TCP socket under it: Node keeps that one as the TLS
 * socket's `_parent` (internal, but there since TLS sockets have wrapped
 * others; test/system/tls.test.ts pins it).
 */
export function peerAddress(socket: Socket): string {
  return (
    proxiedSource.get(socket) ??
    proxiedSource.get((socket as Socket & { _parent?: Socket })._parent as Socket) ??
    socket.remoteAddress ??
    ''
  );
}
