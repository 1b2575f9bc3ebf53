/**
 * Access log: one line per finished or aborted request, whatever stage
 * answered. With [server].access_log_file, in the configured format through
 * the pipe to the master (../access-log/); with access_log alone, a pino
 * line in the main log with the event a stage or handler noted. Query
 * strings only with access_log_query: they carry tokens as often as search
 * terms. The client IP is the one the client-ip stage resolved (the TCP
 * peer when a request was refused before it).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../../config/types.js';
import { type AccessRecord, combinedLine, jsonLine } from '../access-log/format.js';
import { AccessLogPipe } from '../access-log/pipe.js';
import type { Stage } from './stage.js';

/** Counts the body bytes handed to the response (nginx's $body_bytes_sent counts what follows the head). */
function countBody(res: ServerResponse): () => number {
  let bytes = 0;
  const add = (chunk: unknown, encoding: unknown): void => {
    if (typeof chunk === 'string') bytes += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) bytes += chunk.byteLength;
  };
  const write = res.write;
  const end = res.end;
  // HTTP/2's end(chunk) writes the chunk through write(): counted once, in end.
  let ending = false;
  res.write = function countedWrite(this: ServerResponse, chunk: unknown, ...rest: unknown[]): boolean {
    if (!ending) add(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function countedEnd(this: ServerResponse, chunk?: unknown, ...rest: unknown[]): ServerResponse {
    if (typeof chunk !== 'function') add(chunk, rest[0]);
    ending = true;
    try {
      return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } finally {
      ending = false;
    }
  } as ServerResponse['end'];
  return () => (res.req?.method === 'HEAD' ? 0 : bytes);
}

function targetOf(target: string, keepQuery: boolean): string {
  if (keepQuery) return target;
  const query = target.indexOf('?');
  return query === -1 ? target : target.slice(0, query);
}

const headerOf = (req: IncomingMessage, name: 'referer' | 'user-agent'): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
};

export function accessLogStage(config: CompiledConfig, log: Logger): Stage & { close(): Promise<void> } {
  const { accessLog, accessLogFile, accessLogFormat, accessLogQuery } = config.server;
  if (accessLogFile !== null) {
    const pipe = new AccessLogPipe(log);
    const format = accessLogFormat === 'json' ? jsonLine : combinedLine;
    return {
      name: 'access-log',
      onRequest({ req, res, ctx }) {
        const startedAtMs = Date.now();
        const started = performance.now();
        const bodyBytes = countBody(res);
        res.once('close', () => {
          const record: AccessRecord = {
            clientIp: ctx.clientIp || (req.socket?.remoteAddress ?? ''),
            user: ctx.user,
            startedAtMs,
            method: req.method ?? '',
            target: targetOf(ctx.target, accessLogQuery),
            protocol: `HTTP/${req.httpVersion}`,
            status: res.statusCode,
            bodyBytes: bodyBytes(),
            referer: headerOf(req, 'referer'),
            userAgent: headerOf(req, 'user-agent'),
            host: ctx.host,
            durationMs: Math.round((performance.now() - started) * 10) / 10,
            event: ctx.event,
          };
          pipe.write(format(record));
        });
      },
      close: () => pipe.close(),
    };
  }
  if (!accessLog) return { name: 'access-log', close: () => Promise.resolve() };
  return {
    name: 'access-log',
    onRequest({ req, res, ctx }) {
      const started = performance.now();
      const done = (): void => {
        log.info(
          {
            access: true,
            clientIp: ctx.clientIp,
            method: req.method,
            host: ctx.host,
            path: targetOf(ctx.target, accessLogQuery),
            status: res.statusCode,
            ms: Math.round((performance.now() - started) * 10) / 10,
            aborted: !res.writableFinished,
            event: ctx.event ?? undefined,
            detail: ctx.detail ?? undefined,
          },
          'request',
        );
      };
      res.once('close', done);
    },
    close: () => Promise.resolve(),
  };
}
