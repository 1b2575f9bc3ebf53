/**
 * Parse errors never reach the pipeline: Node's parser (llhttp) rejected
 * the bytes ('clientError' of the HTTP/1 server). They are answered here,
 * from the error catalogue with the security headers, and the connection is
 * closed (the framing is lost).
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { LimitsSpec } from '../../config/types.js';
import type { Audit } from '../audit.js';
import { ERRORS, rawErrorResponse, type ErrorCode } from '../errors.js';
import type { WorkerMetrics } from '../metrics.js';

/** A parse error as Node reports it; rawPacket holds the bytes it read of the head. */
export type ParseError = NodeJS.ErrnoException & { rawPacket?: Buffer };

/** The catalogue's answer to a parse error, or null for a client that is simply gone. */
export function parseErrorCode(error: ParseError, maxHeaderBytes: number): ErrorCode | null {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW': {
      // The request line alone overflowed the head limit: that is a URL too
      // long (414), not too many header bytes (431). Only the line break is
      // looked for; the raw bytes are never logged.
      // Node 24's parser also reports more than maxHeadersCount headers as an
      // overflow: a complete head within the size limit means that case.
      const raw = error.rawPacket;
      const lineEnd = raw?.indexOf(0x0a) ?? 0;
      const headEnd = raw?.indexOf('\r\n\r\n') ?? -1;
      if (lineEnd === -1 || lineEnd > maxHeaderBytes) return 'URL_TOO_LONG';
      if (headEnd !== -1 && headEnd + 4 <= maxHeaderBytes) return 'TOO_MANY_HEADERS';
      return 'HEADERS_TOO_LARGE';
    }
    case 'HPE_INVALID_VERSION':
      return 'VERSION_NOT_SUPPORTED';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 'REQUEST_TIMEOUT';
    case 'ECONNRESET':
    case 'EPIPE':
      return null;
    default:
      return 'MALFORMED_REQUEST';
  }
}

/**
 * The 'clientError' listener of the HTTP/1 servers: answers, counts, audits,
 * and logs without err.rawPacket, which holds the raw request including any
 * Authorization or Cookie header.
 */
export function parseErrorAnswer(
  limits: LimitsSpec,
  log: Logger,
  metrics: WorkerMetrics,
  audit: Audit,
  errorHeaders: (socket: Socket) => readonly (readonly [string, string])[],
): (error: ParseError, socket: Socket) => void {
  return (error, socket) => {
    const code = parseErrorCode(error, limits.maxHeaderBytes);
    if (code === null) log.debug({ event: 'connection.reset', clientIp: socket.remoteAddress }, 'client error');
    else {
      metrics.rejection(ERRORS[code].event);
      audit({ event: ERRORS[code].event, status: ERRORS[code].status, clientIp: socket.remoteAddress, detail: error.code });
    }
    if (code !== null && socket.writable && socket.bytesWritten === 0) {
      socket.end(rawErrorResponse(code, errorHeaders(socket)));
    } else {
      socket.destroy();
    }
  };
}
