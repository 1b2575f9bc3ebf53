/**
 * Access log ([server].access_log): one line per finished or aborted
 * request, with the event a stage or handler noted. Query strings are left
 * out: they carry tokens as often as search terms.
 */
import type { Logger } from 'pino';
import type { CompiledConfig } from '../../config/types.js';
import type { Stage } from './stage.js';

export function accessLogStage(config: CompiledConfig, log: Logger): Stage {
  if (!config.server.accessLog) return { name: 'access-log' };
  return {
    name: 'access-log',
    onRequest({ req, res, ctx }) {
      const started = performance.now();
      const done = (): void => {
        const url = req.url ?? '';
        const query = url.indexOf('?');
        log.info(
          {
            access: true,
            clientIp: ctx.clientIp,
            method: req.method,
            host: ctx.host,
            path: query === -1 ? url : url.slice(0, query),
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
  };
}
