/**
 * Which requests ask to switch protocols, and whether a WebSocket opening
 * handshake is one: RFC 6455 §4.1-§4.2 over HTTP/1.1 (GET with Upgrade:
 * websocket), RFC 8441 §4-§5 over HTTP/2 (CONNECT with :protocol websocket,
 * no Sec-WebSocket-Key / -Accept).
 *
 * Over HTTP/1.1 only requests Node's parser flagged as upgrades count (an
 * Upgrade header with "upgrade" in Connection, RFC 9110 §7.8); an upgrade to
 * h2c alone never gets here (server.ts serves it as HTTP/1.1, as RFC 9113
 * §3.1 leaves it).
 */
import { nodeCrypto } from '../../node-builtins.js';
import type { IncomingMessage } from 'node:http';
import { HttpError } from '../errors.js';
import { extendedConnectProtocol } from '../http2-request.js';

const { createHash } = nodeCrypto;

/** RFC 6455 §1.3: appended to the key before hashing. */
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** RFC 6455 §4.1: the base64 of 16 bytes, exactly. */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
/** RFC 6455 §4.4: the version this server speaks, announced when a client asks for another. */
export const WEBSOCKET_VERSION = '13';

export type UpgradeRequest =
  | { readonly kind: 'none' }
  | { readonly kind: 'websocket'; readonly http2: boolean }
  /** An Upgrade to something else (or an extended CONNECT for another protocol): never served. */
  | { readonly kind: 'other'; readonly protocol: string };

const NONE: UpgradeRequest = { kind: 'none' };
const WEBSOCKET_HTTP1: UpgradeRequest = { kind: 'websocket', http2: false };
const WEBSOCKET_HTTP2: UpgradeRequest = { kind: 'websocket', http2: true };

/** The protocol names an Upgrade field lists, lower-case, without versions ("websocket", "h2c"). */
export function upgradeTokens(field: string | undefined): string[] {
  if (field === undefined) return [];
  return field
    .split(',')
    .map((token) => token.trim().split('/', 1)[0]!.toLowerCase())
    .filter((token) => token !== '');
}

export function upgradeOf(req: IncomingMessage): UpgradeRequest {
  const protocol = extendedConnectProtocol(req);
  if (protocol !== null) return protocol.toLowerCase() === 'websocket' ? WEBSOCKET_HTTP2 : { kind: 'other', protocol };
  if (!(req as IncomingMessage & { upgrade?: boolean }).upgrade || req.method === 'CONNECT') return NONE;
  const tokens = upgradeTokens(req.headers.upgrade);
  return tokens.includes('websocket') ? WEBSOCKET_HTTP1 : { kind: 'other', protocol: tokens.join(', ') || '(empty)' };
}

export function isWebSocketRequest(req: IncomingMessage): boolean {
  return upgradeOf(req).kind === 'websocket';
}

/** Throws the catalogue's answer to an opening handshake that is not one. */
export function checkHandshake(req: IncomingMessage, http2: boolean): void {
  const bad = (why: string): HttpError => new HttpError('WEBSOCKET_BAD_HANDSHAKE', why);
  if (!http2) {
    // RFC 6455 §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1."
    if (req.method !== 'GET') throw bad(`method ${req.method}`);
    if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) throw bad(`HTTP/${req.httpVersion}`);
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || !WEBSOCKET_KEY.test(key)) throw bad('Sec-WebSocket-Key is not 16 bytes in base64');
  }
  // An opening handshake carries no body (RFC 6455 §4.1; RFC 8441 §5 on the CONNECT): whatever follows is frames.
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) throw bad('a body');
  const version = req.headers['sec-websocket-version'];
  if (version !== WEBSOCKET_VERSION) {
    throw new HttpError('WEBSOCKET_VERSION', `Sec-WebSocket-Version ${String(version)}`, { 'Sec-WebSocket-Version': WEBSOCKET_VERSION });
  }
}

/** RFC 6455 §4.2.2: the Sec-WebSocket-Accept for a key. */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}
