/**
 * The PROXY protocol's connection wrapper: reads a header from a freshly
 * accepted socket with the parser of proxy-protocol.ts, applies the trust
 * policy of [security.proxy_protocol], and gives the socket on with every
 * byte after the header pushed back for the HTTP (or TLS) parser.
 */
import type { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { CidrSet } from '../../net/cidr.js';
import {
  checkMaxHeaderBytes,
  DEFAULT_MAX_PROXY_HEADER_BYTES,
  parseProxyHeader,
  startsWithProxySignature,
  type ProxyHeader,
} from './proxy-protocol.js';

export interface ProxyProtocolOptions {
  /** security.proxy_protocol.required: a connection without a header is refused. */
  required: boolean;
  /** security.proxy_protocol.trusted_proxies: the only peers allowed to send a header. */
  trusted: CidrSet;
  /** How long the whole header may take to arrive. */
  timeoutMs: number;
  /** Cap on a v2 header, default DEFAULT_MAX_PROXY_HEADER_BYTES. */
  maxHeaderBytes?: number;
}

export type ProxyReadResult =
  /** null: no header (only when !required). */
  { ok: true; header: ProxyHeader | null } | { ok: false; reason: 'untrusted' | 'missing' | 'malformed' | 'timeout'; detail: string };

/**
 * Reads the PROXY header (if any) from a freshly accepted socket, then hands
 * the socket on with any bytes read after the header pushed back
 * (socket.unshift).
 *
 * On return the socket is paused (flowing === false) with every byte after
 * the header in its read buffer: the caller attaches its consumer and then
 * calls `socket.resume()` (handOver does both for an http.Server).
 * All listeners added here are removed, including the 'error' listener that
 * guarded the read, so the caller must attach its own before resuming. This
 * function never writes to nor destroys the socket; on { ok: false } the
 * caller closes it.
 *
 * A peer that closes or errors before the parser can decide is 'missing' if
 * it sent nothing and 'malformed' otherwise.
 */
export function readProxyHeader(socket: net.Socket, options: ProxyProtocolOptions): Promise<ProxyReadResult> {
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_PROXY_HEADER_BYTES;
  checkMaxHeaderBytes(maxHeaderBytes);
  const peer = socket.remoteAddress;
  const trusted = peer !== undefined && options.trusted.has(peer);
  if (!trusted && options.required) {
    // Nobody else may send a header, and a header is required: nothing an
    // untrusted peer sends could be accepted, so do not read it.
    return Promise.resolve({ ok: false, reason: 'untrusted', detail: `peer ${peer ?? '(closed)'} is not a trusted proxy` });
  }

  return new Promise((resolve) => {
    let received: Buffer = Buffer.alloc(0);
    let settled = false;

    const finish = (result: ProxyReadResult, rest?: Buffer): void => {
      if (settled) return;
      settled = true;
      // Pause before anything else: no 'data' may be emitted to nobody.
      socket.pause();
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.removeListener('error', onError);
      if (rest !== undefined && rest.length > 0) socket.unshift(rest);
      resolve(result);
    };
    const fail = (reason: 'untrusted' | 'missing' | 'malformed' | 'timeout', detail: string): void => finish({ ok: false, reason, detail });

    const onData = (chunk: Buffer): void => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const result = parseProxyHeader(received, maxHeaderBytes);
      switch (result.state) {
        case 'need-more':
          if (!trusted && startsWithProxySignature(received))
            fail('untrusted', `peer ${peer ?? '(closed)'} sent a PROXY header but is not a trusted proxy`);
          return;
        case 'absent':
          if (options.required) fail('missing', 'connection does not start with a PROXY header');
          else finish({ ok: true, header: null }, received);
          return;
        case 'invalid':
          if (trusted) fail('malformed', result.reason);
          else fail('untrusted', `peer ${peer ?? '(closed)'} sent a PROXY header but is not a trusted proxy`);
          return;
        case 'done':
          if (trusted) finish({ ok: true, header: result.header }, received.subarray(result.consumed));
          else fail('untrusted', `peer ${peer ?? '(closed)'} sent a PROXY header but is not a trusted proxy`);
          return;
      }
    };
    const ended = (how: string): void => {
      if (received.length === 0) fail('missing', `peer ${how} before sending anything`);
      else fail('malformed', `peer ${how} inside a PROXY header (${received.length} bytes received)`);
    };
    const onEnd = (): void => ended('closed');
    const onError = (error: Error): void => ended(`failed (${(error as NodeJS.ErrnoException).code ?? error.message})`);

    const timer = setTimeout(() => fail('timeout', `no complete PROXY header decision within ${options.timeoutMs} ms`), options.timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    // An explicit resume: 'data' alone does not restart a socket the caller paused.
    socket.resume();
  });
}

/**
 * Gives a socket that readProxyHeader left paused to an http(s).Server.
 * The resume is not optional: the server's parser takes over the socket's
 * handle (parser.consume), so without it the bytes unshifted after the
 * header stay in the stream buffer and never reach the parser (measured on
 * Node 24: the first request is silently lost).
 */
export function handOver(server: EventEmitter, socket: net.Socket): void {
  server.emit('connection', socket);
  socket.resume();
}
