/**
 * The reverse proxy against real upstream servers on port 0, with the
 * handler mounted in a plain http.Server the way the worker mounts it.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERRORS } from '../../src/worker/errors.js';
import { HOP_BY_HOP_HEADERS, connectionListedHeaders, endToEndResponseHeaders } from '../../src/worker/handlers/hop-by-hop.js';
import { createProxyHandler } from '../../src/worker/handlers/proxy.js';
import type { ProxyBackend } from '../../src/worker/handlers/proxy.js';
import type { RequestContext, RequestHandler } from '../../src/worker/handlers/types.js';
import { UpstreamBalancer, UpstreamPeer } from '../../src/worker/handlers/upstreams.js';

const CLIENT_IP = '203.0.113.7';
const MiB = 1024 * 1024;

/** Everything started by a test, closed in reverse order at the end. */
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function listen(server: Server | net.Server, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server | net.Server): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

interface Upstream {
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  /** TCP connections the upstream has accepted. */
  connections(): number;
}

async function startUpstream(respond: (req: IncomingMessage, res: ServerResponse) => void, path = ''): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    respond(req, res);
  });
  server.on('connection', () => connections++);
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return { url: `http://127.0.0.1:${port}${path}`, port, seen, connections: () => connections };
}

/** An upstream that answers "ok", saying which one it is. */
function okUpstream(name = 'ok'): Promise<Upstream> {
  return startUpstream((_req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end(name);
  });
}

/** A raw TCP upstream: `respond` gets each connection's first request head. */
async function startRawUpstream(respond: (socket: net.Socket, head: string) => void): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    let buffered = '';
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffered.slice(0, end);
      buffered = buffered.slice(end + 4);
      const [method = '', url = ''] = head.split(' ');
      seen.push({ method, url, headers: {} });
      respond(socket, head);
    });
  });
  const port = await listen(server);
  cleanups.push(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${port}`, port, seen, connections: () => connections };
}

/** A port nothing listens on: connections to it are refused. */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function backend(targets: readonly (string | { url: string; weight: number })[], overrides: Partial<ProxyBackend> = {}): ProxyBackend {
  return {
    type: 'proxy',
    configKey: 'vhosts[0].backend',
    targets: targets.map((t) => ({
      socketPath: null,
      hostSocketPath: null,
      jailBind: null,
      ...(typeof t === 'string' ? { url: t, weight: 1 } : t),
    })),
    loadBalancing: 'round_robin',
    connectTimeoutMs: 2_000,
    upstreamTimeoutMs: 10_000,
    maxFails: 1,
    failTimeoutMs: 10_000,
    preserveHost: true,
    keepAlive: true,
    webSocket: true,
    protocol: 'http/1.1',
    tls: null,
    healthCheck: null,
    ...overrides,
  };
}

interface Proxy {
  readonly port: number;
  readonly handler: RequestHandler;
  /** Every ctx.note call, in order, as [event, detail]. */
  readonly notes: [string, string | undefined][];
  events(name: string): (string | undefined)[];
}

async function startProxy(spec: ProxyBackend): Promise<Proxy> {
  const handler = createProxyHandler(spec);
  const notes: [string, string | undefined][] = [];
  const server = http.createServer((req, res) => {
    const ctx: RequestContext = {
      clientIp: CLIENT_IP,
      protocol: 'http',
      host: (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase(),
      note: (event, detail) => notes.push([event, detail]),
    };
    handler.handle(req, res, ctx);
  });
  const port = await listen(server);
  cleanups.push(async () => {
    await closeServer(server);
    await handler.close?.();
  });
  return {
    port,
    handler,
    notes,
    events: (name) => notes.filter(([event]) => event === name).map(([, detail]) => detail),
  };
}

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One request through the proxy on its own connection. */
async function request(
  proxy: Proxy,
  options: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Reply> {
  const req = http.request({
    host: '127.0.0.1',
    port: proxy.port,
    method: options.method ?? 'GET',
    path: options.path ?? '/',
    headers: options.headers,
    agent: false,
  });
  req.end(options.body);
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
}

/** Send exact bytes and read until the proxy closes the connection. */
async function rawExchange(port: number, bytes: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(bytes);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

/** A deterministic byte stream of `total` bytes, produced on demand. */
function patternStream(total: number, chunkBytes = 64 * 1024): Readable {
  let sent = 0;
  let counter = 0;
  return new Readable({
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      const size = Math.min(chunkBytes, total - sent);
      const chunk = Buffer.alloc(size, counter++ & 0xff);
      chunk.writeUInt32BE(counter, 0);
      sent += size;
      this.push(chunk);
    },
  });
}

async function sha256(stream: AsyncIterable<Buffer>): Promise<{ digest: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { digest: hash.digest('hex'), bytes };
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('hop-by-hop helpers', () => {
  test('Connection tokens name headers, except the keep-alive / close options', () => {
    assert.equal(connectionListedHeaders(undefined), null);
    assert.equal(connectionListedHeaders('keep-alive'), null);
    assert.equal(connectionListedHeaders('Close'), null);
    assert.deepEqual([...(connectionListedHeaders('keep-alive, X-Foo ,x-bar') ?? [])], ['x-foo', 'x-bar']);
    assert.deepEqual([...(connectionListedHeaders(['X-A', 'x-b']) ?? [])], ['x-a', 'x-b']);
  });

  test('response fields: hop-by-hop and Connection-named dropped, repeats kept, CL dropped beside TE', () => {
    const flat = endToEndResponseHeaders({
      connection: 'keep-alive, X-Secret',
      'x-secret': '1',
      'keep-alive': 'timeout=3',
      'transfer-encoding': 'chunked',
      'content-length': '12',
      'set-cookie': ['a=1', 'b=2'],
      'x-kept': 'yes',
    });
    assert.deepEqual(flat, ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'x-kept', 'yes']);
    for (const name of [
      'connection',
      'keep-alive',
      'proxy-authenticate',
      'proxy-authorization',
      'te',
      'trailer',
      'trailers',
      'transfer-encoding',
      'upgrade',
      'proxy-connection',
      'http2-settings',
    ]) {
      assert.ok(HOP_BY_HOP_HEADERS.has(name), name);
    }
  });
});

describe('upstream balancer', () => {
  const noMarking = { maxFails: 0, failTimeoutMs: 10_000 };

  test('smooth weighted round robin spreads 5,1,1 as nginx does: a a b a c a a', () => {
    const peers = [new UpstreamPeer(5), new UpstreamPeer(1), new UpstreamPeer(1)];
    const balancer = new UpstreamBalancer(peers, 'round_robin', noMarking);
    const names = ['a', 'b', 'c'];
    const picks = Array.from({ length: 14 }, () => names[peers.indexOf(balancer.select(null, 0)!)]);
    assert.deepEqual(picks.join(''), 'aabacaaaabacaa');
  });

  test('least connections divides in-flight by weight and round-robins ties', () => {
    const [a, b] = [new UpstreamPeer(2), new UpstreamPeer(1)];
    const balancer = new UpstreamBalancer([a, b], 'least_connections', noMarking);
    a.active = 3;
    b.active = 1;
    assert.equal(balancer.select(null, 0), b); // 3/2 > 1/1
    a.active = 2;
    const picks = [balancer.select(null, 0), balancer.select(null, 0), balancer.select(null, 0)];
    // 2/2 == 1/1: ties go round robin by weight.
    assert.deepEqual(picks, [a, b, a]);
  });

  test('max_fails within fail_timeout marks down; success or expiry brings it back', () => {
    const [a, b] = [new UpstreamPeer(1), new UpstreamPeer(1)];
    const balancer = new UpstreamBalancer([a, b], 'round_robin', { maxFails: 2, failTimeoutMs: 1_000 });
    assert.equal(balancer.markFailure(a, 0), false);
    assert.equal(balancer.markFailure(a, 2_000), false, 'the first failure fell out of the window');
    assert.equal(balancer.markFailure(a, 2_500), true);
    assert.ok(a.isDown(3_000));
    for (let i = 0; i < 4; i++) assert.equal(balancer.select(null, 3_000), b);
    assert.ok(!a.isDown(3_600), 'back after fail_timeout');
    balancer.markFailure(b, 3_600);
    balancer.markFailure(b, 3_600);
    // Both down: the balancer still offers a target rather than none.
    balancer.markFailure(a, 3_700);
    balancer.markFailure(a, 3_700);
    assert.notEqual(balancer.select(null, 3_800), null);
    assert.equal(balancer.select(new Set([a, b]), 3_800), null, 'nothing left once both were tried');
    balancer.markSuccess(a);
    assert.ok(!a.isDown(3_800));
  });

  test('max_fails = 0 and a single target never mark anything down', () => {
    const [a, b] = [new UpstreamPeer(1), new UpstreamPeer(1)];
    const off = new UpstreamBalancer([a, b], 'round_robin', { maxFails: 0, failTimeoutMs: 1_000 });
    assert.equal(off.markFailure(a, 0), false);
    assert.ok(!a.isDown(0));
    const single = new UpstreamPeer(1);
    const alone = new UpstreamBalancer([single], 'round_robin', { maxFails: 1, failTimeoutMs: 1_000 });
    assert.equal(alone.markFailure(single, 0), false);
    assert.equal(alone.select(null, 0), single);
  });
});

describe('request headers to the upstream', () => {
  test('hop-by-hop and Connection-named fields stripped; client-address headers replaced or appended', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url]));
    const response = await rawExchange(
      proxy.port,
      [
        'GET /p?q=1 HTTP/1.1',
        'Host: front.example:8080',
        'Connection: close, X-Hop-Secret',
        'X-Hop-Secret: s',
        'Keep-Alive: timeout=5',
        'TE: deflate;q=0.5, trailers',
        'Trailer: X-T',
        'Trailers: X-T',
        'Upgrade: foo/1',
        'Proxy-Authorization: Basic Zm9vOmJhcg==',
        'Proxy-Connection: keep-alive',
        'HTTP2-Settings: AAMAAABkAAQAAP__',
        'X-Real-IP: 6.6.6.6',
        'X-Forwarded-For: 198.51.100.1',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Host: evil.example',
        'X-End-To-End: kept',
        '',
        '',
      ].join('\r\n'),
    );
    assert.match(response, /^HTTP\/1\.1 200 /);
    const seen = upstream.seen[0]!;
    assert.equal(seen.url, '/p?q=1');
    for (const name of [
      'x-hop-secret',
      'keep-alive',
      'trailer',
      'trailers',
      'upgrade',
      'proxy-authorization',
      'proxy-connection',
      'http2-settings',
    ]) {
      assert.equal(seen.headers[name], undefined, `${name} must not reach the upstream`);
    }
    // TE is this hop's own: only "trailers" is said again, since the proxy relays trailer fields.
    assert.equal(seen.headers.te, 'trailers');
    // undici's own connection management, not the client's.
    assert.equal(seen.headers.connection, 'keep-alive');
    assert.equal(seen.headers['x-real-ip'], CLIENT_IP);
    // The peer is no trusted proxy (no ctx.peer): its own list is dropped, never appended to.
    assert.equal(seen.headers['x-forwarded-for'], CLIENT_IP);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], 'front.example:8080');
    assert.equal(seen.headers.host, 'front.example:8080', 'preserve_host passes the client Host');
    assert.equal(seen.headers['x-end-to-end'], 'kept');
  });

  test('without a prior X-Forwarded-For the header is just the client IP', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url]));
    await request(proxy, { headers: { host: 'a.example' } });
    assert.equal(upstream.seen[0]!.headers['x-forwarded-for'], CLIENT_IP);
    assert.equal(upstream.seen[0]!.headers['x-real-ip'], CLIENT_IP);
  });

  test('an X-Forwarded-For named in Connection is dropped, not appended to', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url]));
    await request(proxy, { headers: { connection: 'close, X-Forwarded-For', 'x-forwarded-for': '198.51.100.9' } });
    assert.equal(upstream.seen[0]!.headers['x-forwarded-for'], CLIENT_IP);
  });

  test('preserve_host = false sends the target host and port', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url], { preserveHost: false }));
    await request(proxy, { headers: { host: 'front.example' } });
    assert.equal(upstream.seen[0]!.headers.host, `127.0.0.1:${upstream.port}`);
    assert.equal(upstream.seen[0]!.headers['x-forwarded-host'], 'front.example');
  });

  test('the request path joins the target path prefix without doubled slashes', async () => {
    const cases: [prefix: string, path: string, expected: string][] = [
      ['', '/x/y?z=1', '/x/y?z=1'],
      ['/', '/x', '/x'],
      ['/api', '/x/y?z=1', '/api/x/y?z=1'],
      ['/api/', '/x', '/api/x'],
      ['/api', '/', '/api/'],
    ];
    for (const [prefix, path, expected] of cases) {
      const upstream = await startUpstream((_req, res) => res.end(), prefix);
      const proxy = await startProxy(backend([upstream.url]));
      const reply = await request(proxy, { path });
      assert.equal(reply.status, 200);
      assert.equal(upstream.seen[0]!.url, expected, `${prefix} + ${path}`);
    }
  });

  test('absolute-form forwards only path and query; asterisk-form, CONNECT and TRACE are refused', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([`${upstream.url}/api`]));
    const absolute = await rawExchange(
      proxy.port,
      'GET http://elsewhere.example/abs?x=1 HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n',
    );
    assert.match(absolute, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.seen[0]!.url, '/api/abs?x=1');

    const asterisk = await rawExchange(proxy.port, 'OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.match(asterisk, new RegExp(`^HTTP/1\\.1 ${ERRORS.BAD_PATH.status} `));
    const trace = await request(proxy, { method: 'TRACE' });
    assert.equal(trace.status, ERRORS.METHOD_NOT_ALLOWED.status);
    assert.equal(upstream.seen.length, 1, 'refused requests never reach the upstream');
  });

  test('a body with Content-Length and a chunked one both arrive intact', async () => {
    const upstream = await startUpstream(async (req, res) => {
      const { digest, bytes } = await sha256(req);
      res.end(`${bytes} ${digest}`);
    });
    const proxy = await startProxy(backend([upstream.url]));
    const body = Buffer.from('hello upstream');
    const expected = createHash('sha256').update(body).digest('hex');
    const withLength = await request(proxy, { method: 'POST', body, headers: { 'content-length': body.length } });
    assert.equal(withLength.body.toString(), `${body.length} ${expected}`);

    const chunked = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      method: 'PUT',
      path: '/',
      agent: false,
      headers: { 'transfer-encoding': 'chunked' },
    });
    chunked.write(body.subarray(0, 5));
    chunked.end(body.subarray(5));
    const [res] = (await once(chunked, 'response')) as [IncomingMessage];
    let text = '';
    for await (const chunk of res) text += String(chunk);
    // Re-framed upstream: chunked, or with a Content-Length when the whole
    // body had already arrived by the time undici wrote the request.
    assert.equal(text, `${body.length} ${expected}`);
  });
});

describe('response from the upstream', () => {
  test('hop-by-hop and Connection-named fields stripped; every Set-Cookie kept', async () => {
    const upstream = await startRawUpstream((socket) => {
      socket.write(
        [
          'HTTP/1.1 201 Created',
          'Content-Length: 2',
          'Connection: keep-alive, X-Up-Secret',
          'X-Up-Secret: 1',
          'Keep-Alive: timeout=3',
          'Proxy-Authenticate: Basic realm="up"',
          'Trailer: X-T',
          'Upgrade: h2c',
          'Set-Cookie: a=1; Path=/',
          'Set-Cookie: b=2; Path=/',
          'X-Kept: yes',
          '',
          'ok',
        ].join('\r\n'),
      );
    });
    const proxy = await startProxy(backend([upstream.url]));
    const reply = await request(proxy);
    assert.equal(reply.status, 201);
    assert.equal(reply.body.toString(), 'ok');
    for (const name of ['x-up-secret', 'proxy-authenticate', 'trailer', 'upgrade']) {
      assert.equal(reply.headers[name], undefined, `${name} must not reach the client`);
    }
    assert.notEqual(reply.headers['keep-alive'], 'timeout=3', 'Keep-Alive is our own, not the upstream one');
    assert.doesNotMatch(String(reply.headers.connection), /x-up-secret/i);
    assert.deepEqual(reply.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(reply.headers['x-kept'], 'yes');
  });

  test('HEAD is relayed without a body', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.setHeader('Content-Length', '5');
      res.end();
    });
    const proxy = await startProxy(backend([upstream.url]));
    const reply = await request(proxy, { method: 'HEAD' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], '5');
    assert.equal(reply.body.length, 0);
  });

  test('a malformed upstream response is 502 and does not mark the target', async () => {
    const upstream = await startRawUpstream((socket) => socket.end('HTTP/1.1 abc nonsense\r\n\r\n'));
    const proxy = await startProxy(backend([upstream.url]));
    const reply = await request(proxy);
    assert.equal(reply.status, ERRORS.UPSTREAM_BAD_RESPONSE.status, JSON.stringify(proxy.notes));
    assert.deepEqual(proxy.events(ERRORS.UPSTREAM_BAD_RESPONSE.event).length, 1);
    assert.equal(proxy.events('upstream.marked_down').length, 0);
  });

  test('an upstream dying mid-body cuts the client connection instead of ending cleanly', async () => {
    const upstream = await startRawUpstream((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly part');
      setTimeout(() => socket.destroy(), 50);
    });
    const proxy = await startProxy(backend([upstream.url]));
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/', agent: false });
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    assert.equal(res.statusCode, 200);
    await assert.rejects(async () => {
      for await (const chunk of res) void chunk;
    });
  });
});

describe('connections and balancing', () => {
  test('keep-alive: sequential requests reuse the upstream connection', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url]));
    for (let i = 0; i < 10; i++) assert.equal((await request(proxy)).status, 200);
    assert.equal(upstream.seen.length, 10);
    assert.equal(upstream.connections(), 1);
  });

  test('keepalive = false opens a connection per request with Connection: close', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url], { keepAlive: false }));
    for (let i = 0; i < 3; i++) assert.equal((await request(proxy)).status, 200);
    assert.equal(upstream.connections(), 3);
    assert.equal(upstream.seen[0]!.headers.connection, 'close');
  });

  test('round robin honours weights 3:1 in nginx smooth order', async () => {
    const a = await okUpstream('a');
    const b = await okUpstream('b');
    const proxy = await startProxy(
      backend([
        { url: a.url, weight: 3 },
        { url: b.url, weight: 1 },
      ]),
    );
    let order = '';
    for (let i = 0; i < 8; i++) order += (await request(proxy)).body.toString();
    assert.equal(order, 'aabaaaba');
    assert.equal(a.seen.length, 6);
    assert.equal(b.seen.length, 2);
  });

  test('least connections sends new requests to the idle target', async () => {
    const held: ServerResponse[] = [];
    const busy = await startUpstream((_req, res) => held.push(res));
    const idle = await okUpstream('idle');
    const proxy = await startProxy(backend([busy.url, idle.url], { loadBalancing: 'least_connections' }));
    const slow = request(proxy);
    await waitFor(() => held.length === 1);
    for (let i = 0; i < 3; i++) assert.equal((await request(proxy)).body.toString(), 'idle');
    held[0]!.end('busy');
    assert.equal((await slow).body.toString(), 'busy');
    assert.equal(busy.seen.length, 1);
    assert.equal(idle.seen.length, 3);
  });
});

describe('failures', () => {
  test('a refused target is marked down after max_fails and GETs succeed via the other', async () => {
    const dead = `http://127.0.0.1:${await refusedPort()}`;
    const live = await okUpstream('live');
    const proxy = await startProxy(backend([dead, live.url], { maxFails: 1, failTimeoutMs: 60_000 }));
    for (let i = 0; i < 6; i++) {
      const reply = await request(proxy);
      assert.equal(reply.status, 200);
      assert.equal(reply.body.toString(), 'live');
    }
    assert.equal(live.seen.length, 6);
    assert.equal(proxy.events('upstream.error').length, 1, 'the dead target is tried once, then skipped');
    assert.deepEqual(proxy.events('upstream.marked_down'), [dead]);
    assert.equal(proxy.events('upstream.retry').length, 1);
  });

  test('a POST with a body is not retried on another target', async () => {
    const dead = `http://127.0.0.1:${await refusedPort()}`;
    const live = await okUpstream('live');
    // maxFails 0: no marking, so the dead target stays first in rotation.
    const proxy = await startProxy(backend([dead, live.url], { maxFails: 0 }));
    const reply = await request(proxy, { method: 'POST', body: 'payload', headers: { 'content-length': 7 } });
    assert.equal(reply.status, ERRORS.UPSTREAM_UNAVAILABLE.status);
    assert.equal(live.seen.length, 0);
    assert.equal(proxy.events('upstream.retry').length, 0);
  });

  test('502 when every upstream refuses; each is tried once', async () => {
    const targets = [`http://127.0.0.1:${await refusedPort()}`, `http://127.0.0.1:${await refusedPort()}`];
    const proxy = await startProxy(backend(targets));
    const reply = await request(proxy);
    assert.equal(reply.status, ERRORS.UPSTREAM_UNAVAILABLE.status);
    assert.equal(reply.body.toString(), `${ERRORS.UPSTREAM_UNAVAILABLE.status} ${ERRORS.UPSTREAM_UNAVAILABLE.text}\n`);
    assert.deepEqual(proxy.events('upstream.error').length, 2);
    assert.deepEqual(proxy.events(ERRORS.UPSTREAM_UNAVAILABLE.event).length, 1);
  });

  test('targets all marked down are still tried, and one that came back answers', async () => {
    const port = await refusedPort();
    const other = `http://127.0.0.1:${await refusedPort()}`;
    const proxy = await startProxy(backend([`http://127.0.0.1:${port}`, other], { maxFails: 1, failTimeoutMs: 60_000 }));
    assert.equal((await request(proxy)).status, 502);
    assert.equal(proxy.events('upstream.marked_down').length, 2);
    const revived = http.createServer((_req, res) => res.end('back'));
    await listen(revived, port);
    cleanups.push(() => closeServer(revived));
    const reply = await request(proxy);
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString(), 'back');
    assert.ok(proxy.events('upstream.all_down').length >= 1);
  });

  test('504 when the upstream never answers within the timeout', async () => {
    const upstream = await startUpstream(() => {});
    const proxy = await startProxy(backend([upstream.url], { upstreamTimeoutMs: 300 }));
    const started = Date.now();
    const reply = await request(proxy);
    assert.equal(reply.status, ERRORS.UPSTREAM_TIMEOUT.status);
    assert.ok(Date.now() - started >= 250);
    assert.equal(proxy.events(ERRORS.UPSTREAM_TIMEOUT.event).length, 1);
  });

  test('after close() new requests are answered 502', async () => {
    const upstream = await okUpstream();
    const proxy = await startProxy(backend([upstream.url]));
    assert.equal((await request(proxy)).status, 200);
    await proxy.handler.close?.();
    assert.equal((await request(proxy)).status, ERRORS.UPSTREAM_UNAVAILABLE.status);
  });
});

describe('streaming', () => {
  const total = 20 * MiB;

  test('a 20 MiB chunked request body streams to the upstream intact', async () => {
    const upstream = await startUpstream(async (req, res) => {
      const { digest, bytes } = await sha256(req);
      res.end(`${bytes} ${digest}`);
    });
    const proxy = await startProxy(backend([upstream.url]));
    const expected = await sha256(patternStream(total));
    const req = http.request({ host: '127.0.0.1', port: proxy.port, method: 'POST', path: '/upload', agent: false });
    patternStream(total).pipe(req);
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let text = '';
    for await (const chunk of res) text += String(chunk);
    assert.equal(res.statusCode, 200);
    assert.equal(text, `${expected.bytes} ${expected.digest}`);
  });

  test('a 20 MiB response body streams to the client intact', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.setHeader('Content-Length', total);
      patternStream(total).pipe(res);
    });
    const proxy = await startProxy(backend([upstream.url]));
    const expected = await sha256(patternStream(total));
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/download', agent: false });
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    assert.equal(res.headers['content-length'], String(total));
    assert.deepEqual(await sha256(res), expected);
  });

  test('backpressure: a client that stops reading stops the upstream well short of the whole body', async (t) => {
    const size = 64 * MiB;
    let written = 0;
    const upstream = await startUpstream((_req, res) => {
      const source = patternStream(size);
      source.on('data', (chunk: Buffer) => (written += chunk.length));
      source.pipe(res);
    });
    const proxy = await startProxy(backend([upstream.url]));
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/', agent: false });
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    res.pause();
    // Let every buffer on the way (two sockets, undici, the server) fill up.
    let previous = -1;
    while (written !== previous) {
      previous = written;
      await sleep(200);
    }
    t.diagnostic(`upstream stalled after ${(written / MiB).toFixed(1)} MiB`);
    assert.ok(written < size / 2, `upstream produced ${written} bytes while the client read none`);
    const { bytes } = await sha256(res);
    assert.equal(bytes, size);
  });

  test('backpressure: an upstream that stops reading stops the client upload well short of the whole body', async (t) => {
    const size = 64 * MiB;
    let upstreamReq: IncomingMessage | null = null;
    let upstreamRes: ServerResponse | null = null;
    const upstream = await startUpstream((req, res) => {
      req.pause();
      upstreamReq = req;
      upstreamRes = res;
    });
    const proxy = await startProxy(backend([upstream.url]));
    let sent = 0;
    const source = patternStream(size);
    source.on('data', (chunk: Buffer) => (sent += chunk.length));
    const req = http.request({ host: '127.0.0.1', port: proxy.port, method: 'PUT', path: '/', agent: false });
    req.on('error', () => {});
    source.pipe(req);
    await waitFor(() => upstreamReq !== null);
    let previous = -1;
    while (sent !== previous) {
      previous = sent;
      await sleep(200);
    }
    t.diagnostic(`client upload stalled after ${(sent / MiB).toFixed(1)} MiB`);
    assert.ok(sent < size / 2, `client pushed ${sent} bytes while the upstream read none`);
    const { bytes } = await sha256(upstreamReq! as AsyncIterable<Buffer>);
    assert.equal(bytes, size);
    (upstreamRes! as ServerResponse).end('done');
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    assert.equal(res.statusCode, 200);
    res.resume();
  });
});

describe('client abort', () => {
  test('a client leaving mid-response aborts the upstream request', async () => {
    let upstreamClosed = false;
    const upstream = await startUpstream((_req, res) => {
      res.on('close', () => (upstreamClosed = true));
      res.write('first chunk');
    });
    const proxy = await startProxy(backend([upstream.url]));
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/', agent: false });
    req.on('error', () => {});
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    await once(res, 'data');
    req.destroy();
    await waitFor(() => upstreamClosed);
    await waitFor(() => proxy.events('upstream.client_aborted').length === 1);
  });

  test('a client leaving before the response headers aborts the upstream request', async () => {
    let upstreamClosed = false;
    let received = false;
    const upstream = await startUpstream((_req, res) => {
      received = true;
      res.on('close', () => (upstreamClosed = true));
    });
    const proxy = await startProxy(backend([upstream.url]));
    const req = http.get({ host: '127.0.0.1', port: proxy.port, path: '/', agent: false });
    req.on('error', () => {});
    await waitFor(() => received);
    req.destroy();
    await waitFor(() => upstreamClosed);
  });

  test('a client leaving mid-upload aborts the upstream request', async () => {
    let upstreamClosed = false;
    let bytes = 0;
    const upstream = await startUpstream((req, res) => {
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('error', () => {});
      res.on('close', () => (upstreamClosed = true));
    });
    const proxy = await startProxy(backend([upstream.url]));
    const req = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      method: 'POST',
      path: '/',
      agent: false,
      headers: { 'content-length': 10 * MiB },
    });
    req.on('error', () => {});
    req.write(Buffer.alloc(64 * 1024));
    await waitFor(() => bytes > 0);
    req.destroy();
    await waitFor(() => upstreamClosed);
  });
});
