/**
 * The reference server: a bare node:http cluster, the ceiling for any server
 * written on Node. It answers `static.test` with the benchmark file's bytes
 * from memory (no fs, no headers beyond what a minimal server sends) and
 * proxies `proxy.test` to the upstream through a keep-alive agent, the
 * Node counterpart of nginx's `upstream { keepalive 32; }`.
 *
 * With --https-port, --cert and --key each worker also serves the same
 * handler over HTTPS, on Node's TLS defaults (tickets on, each worker with
 * its own ticket key): the ceiling for a TLS server written on Node.
 *
 * With --h2-port (and --cert, --key) each worker also serves HTTP/2 over
 * TLS through node:http2's core API (a 'stream' event answered with
 * stream.respond and stream.end, no compatibility objects): the ceiling for
 * an HTTP/2 server written on Node.
 *
 * Also used, with --workers 1 and no --upstream, as the fallback upstream
 * when nginx is not installed.
 *
 *   node dist/bench/node-cluster.js --port 8080 --file /tmp/x/1k.html
 *       [--workers 2] [--upstream 127.0.0.1:9000]
 *       [--https-port 8443] [--h2-port 8444] [--cert cert.pem --key key.pem]
 */
import cluster from 'node:cluster';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    file: { type: 'string' },
    workers: { type: 'string', default: '2' },
    upstream: { type: 'string' },
    'content-type': { type: 'string', default: 'text/html' },
    'https-port': { type: 'string' },
    'h2-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});

const port = Number(values.port);
const workerCount = Number(values.workers);
const httpsPort = values['https-port'] === undefined ? null : Number(values['https-port']);
const h2Port = values['h2-port'] === undefined ? null : Number(values['h2-port']);
const validPort = (candidate: number): boolean => Number.isInteger(candidate) && candidate >= 1 && candidate <= 65535;
if (
  !validPort(port) ||
  values.file === undefined ||
  !Number.isInteger(workerCount) ||
  workerCount < 1 ||
  (httpsPort !== null && !validPort(httpsPort)) ||
  (h2Port !== null && !validPort(h2Port)) ||
  ((httpsPort !== null || h2Port !== null) && (values.cert === undefined || values.key === undefined))
) {
  process.stderr.write(
    'usage: node-cluster.js --port N --file PATH [--workers N] [--upstream HOST:PORT] [--https-port N] [--h2-port N] [--cert PATH --key PATH]\n',
  );
  process.exit(2);
}

if (cluster.isPrimary && workerCount > 1) {
  for (let i = 0; i < workerCount; i += 1) cluster.fork();
  let stopping = false;
  const stop = (): void => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(`node-cluster: worker ${worker.process.pid} died (${signal ?? code}); stopping\n`);
      stop();
    }
  });
} else {
  serve();
}

function serve(): void {
  const body = readFileSync(values.file as string);
  const contentType = values['content-type'] as string;
  const [upstreamHost, upstreamPort] = (values.upstream ?? '').split(':');
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 32 });

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const host = req.headers.host ?? '';
    if (values.upstream !== undefined && host.startsWith('proxy.test')) {
      const upstreamReq = http.request(
        {
          host: upstreamHost,
          port: Number(upstreamPort),
          method: req.method,
          path: req.url,
          agent,
          headers: {
            host,
            'x-real-ip': req.socket.remoteAddress ?? '',
            'x-forwarded-for': req.socket.remoteAddress ?? '',
            'x-forwarded-proto': 'http',
          },
        },
        (upstreamRes) => {
          res.writeHead(upstreamRes.statusCode ?? 502, {
            'content-type': upstreamRes.headers['content-type'] ?? 'application/octet-stream',
            ...(upstreamRes.headers['content-length'] !== undefined ? { 'content-length': upstreamRes.headers['content-length'] } : {}),
          });
          upstreamRes.pipe(res);
        },
      );
      upstreamReq.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(upstreamReq);
      return;
    }
    res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': body.length });
    res.end(body);
  };
  http.createServer(handler).listen(port, '127.0.0.1');
  const credentials = () => ({ cert: readFileSync(values.cert as string), key: readFileSync(values.key as string) });
  if (httpsPort !== null) https.createServer(credentials(), handler).listen(httpsPort, '127.0.0.1');
  if (h2Port !== null) {
    const length = String(body.length);
    const server = http2.createSecureServer(credentials());
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': contentType, 'content-length': length });
      stream.end(body);
    });
    server.listen(h2Port, '127.0.0.1');
  }
  process.on('SIGTERM', () => process.exit(0));
}
