/**
 * The peer of a connection as the pipeline should see it: the PROXY
 * protocol source when a trusted proxy sent a header for this connection,
 * else the TCP peer. Written once per connection by the accept gate (gate.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { http2Stream } from '../http2-request.js';

const proxiedSource = new WeakMap<Socket, string>();
/** HTTP/2 session -> the peer of its connection, recorded as the session starts (http2.ts). */
const sessionPeers = new WeakMap<object, string>();

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

/** An HTTP/2 session starts on `socket`: its requests' peer is that connection's. */
export function setSessionPeer(session: object, socket: Socket): void {
  sessionPeers.set(session, peerAddress(socket));
}

/**
 * The peer of a request's connection. Over HTTP/2 it is the session's,
 * read without req.socket: Node's compatibility layer makes a Proxy of the
 * stream for that on every request and traps each property read through it.
 */
export function requestPeerAddress(req: IncomingMessage): string {
  const session = http2Stream(req)?.session;
  return (session === undefined ? undefined : sessionPeers.get(session)) ?? peerAddress(req.socket);
}
