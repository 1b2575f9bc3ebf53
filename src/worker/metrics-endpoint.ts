/**
 * [server.metrics]: GET /metrics answers the master's totals (asked over
 * IPC: the master holds them but never parses a network request). Bound to
 * 127.0.0.1 by default; small limits, no keep-alive to speak of. The
 * worker's own counts go the other way (metrics.ts).
 */
import type * as http from 'node:http';
import { nodeHttp } from '../node-builtins.js';
import type { MasterPort } from './master-link.js';

/** How long a metrics scrape's text is reused. */
const SCRAPE_CACHE_MS = 1000;
/** How often Node checks header/request timeouts; its default (30 s) lets slow clients linger. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** The HTTP server of a metrics listener. */
export function createMetricsServer(link: MasterPort): http.Server {
  let scraped: { at: number; text: Promise<string> } | null = null;
  /**
   * The master's text, asked at most once a second however often the
   * endpoint is hit: a flood of scrapes costs the master one render a second.
   */
  const scrapeText = (): Promise<string> => {
    const now = performance.now();
    if (scraped === null || now - scraped.at >= SCRAPE_CACHE_MS) scraped = { at: now, text: link.scrape() };
    return scraped.text;
  };
  return nodeHttp.createServer(
    {
      maxHeaderSize: 4096,
      headersTimeout: 5000,
      requestTimeout: 10_000,
      keepAliveTimeout: 5000,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    (req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('Method Not Allowed\n');
        return;
      }
      if ((req.url ?? '').split('?', 1)[0] !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found: the metrics are at /metrics\n');
        return;
      }
      void scrapeText().then((text) => {
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      });
    },
  );
}
