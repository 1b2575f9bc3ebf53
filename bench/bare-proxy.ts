/**
 * The floor of a reverse proxy written on Node: one process, node:http in
 * front, and to the upstream either undici's Pool.dispatch (the client
 * miwidothttp's proxy uses) or http.request with a keep-alive Agent. It does
 * what any proxy must and nothing more: the client's fields go upstream
 * without the hop-by-hop ones, with Host and the four address fields nginx's
 * benchmark config sets (X-Real-IP, X-Forwarded-For, -Proto, -Host); the
 * upstream's fields come back without the hop-by-hop ones; bodies stream
 * both ways. No limits, no logging, no error pages beyond a bare 502.
 * bench/proxy-floor.ts measures it beside nginx and the worker code.
 *
 *   node dist/bench/bare-proxy.js --port 8080 --upstream 127.0.0.1:9000 --client undici|agent
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { type Dispatcher, Pool } from 'undici';

const { values } = parseArgs({
  options: { port: { type: 'string' }, upstream: { type: 'string' }, client: { type: 'string', default: 'undici' } },
});
if (values.port === undefined || values.upstream === undefined || (values.client !== 'undici' && values.client !== 'agent')) {
  process.stderr.write('usage: bare-proxy.js --port N --upstream HOST:PORT --client undici|agent\n');
  process.exit(2);
}

/** RFC 9110 §7.6.1 and the fields RFC 2616 §13.5.1 called hop-by-hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function requestHeaders(req: http.IncomingMessage): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name of Object.keys(req.headers)) if (!HOP_BY_HOP.has(name)) out[name] = req.headers[name]!;
  const ip = req.socket.remoteAddress ?? '';
  out.host = req.headers.host ?? '';
  out['x-real-ip'] = ip;
  out['x-forwarded-for'] = ip;
  out['x-forwarded-proto'] = 'http';
  out['x-forwarded-host'] = req.headers.host ?? '';
  return out;
}

function responseHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
  return out;
}

const [host, port] = values.upstream.split(':') as [string, string];
const pool = new Pool(`http://${values.upstream}`, { connections: null, pipelining: 1 });
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64 });
const hasBody = (req: http.IncomingMessage): boolean =>
  req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;

function viaUndici(req: http.IncomingMessage, res: http.ServerResponse): void {
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart() {},
    onResponseStart(_controller, statusCode, headers) {
      if (statusCode >= 200) res.writeHead(statusCode, responseHeaders(headers));
    },
    onResponseData(controller, chunk) {
      if (!res.write(chunk)) {
        controller.pause();
        res.once('drain', () => controller.resume());
      }
    },
    onResponseEnd() {
      res.end();
    },
    onResponseError() {
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    },
  };
  const options = { path: req.url!, method: req.method!, headers: requestHeaders(req), body: hasBody(req) ? req : null };
  pool.dispatch(options, handler);
}

function viaAgent(req: http.IncomingMessage, res: http.ServerResponse): void {
  const upstream = http.request(
    { host, port: Number(port), method: req.method, path: req.url, agent, headers: requestHeaders(req) },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, responseHeaders(answer.headers));
      answer.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
  if (hasBody(req)) req.pipe(upstream);
  else upstream.end();
}

http.createServer(values.client === 'undici' ? viaUndici : viaAgent).listen(Number(values.port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
