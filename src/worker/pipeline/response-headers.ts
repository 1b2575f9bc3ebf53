/**
 * Security headers ([security.headers]) on every response, error answers
 * included. Set before the handler runs, so a handler's own writeHead merges
 * with them; headers configured as "" are removed from whatever the handler
 * (or an upstream) sends.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../../config/types.js';
import { setBaselineHeaders } from '../errors.js';
import type { Stage } from './index.js';

export function responseHeadersStage(config: CompiledConfig): Stage {
  const headers = config.responseHeaders;
  const removed = config.removedResponseHeaders;
  return {
    name: 'response-headers',
    onRequest({ res }) {
      setBaselineHeaders(res, headers);
      if (removed.length > 0) stripOnWrite(res, removed);
    },
  };
}

/** Remove headers at the last moment, whichever way the handler writes them. */
function stripOnWrite(res: ServerResponse, removed: readonly string[]): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, statusCode: number, ...rest: unknown[]) {
    for (const name of removed) this.removeHeader(name);
    const last = rest.at(-1);
    if (last && typeof last === 'object' && !Array.isArray(last)) {
      const given = last as OutgoingHttpHeaders;
      for (const key of Object.keys(given)) if (removed.includes(key.toLowerCase())) delete given[key];
    }
    return (writeHead as (...args: unknown[]) => ServerResponse).call(this, statusCode, ...rest);
  } as ServerResponse['writeHead'];
}
