/**
 * WebSocket through the real, sandboxed server (issue 13): RFC 6455 over
 * HTTP/1.1 and RFC 8441 over HTTP/2 to an echo upstream; the upgrade goes
 * through the pipeline first (IDS, limits) and is refused explicitly where
 * the route does not proxy it; bad handshakes, unmasked frames and a
 * trickled gigabyte frame meet their answers (400/426, close 1002, the idle
 * and write timeouts) while other clients are served; a tunnel outlives
 * request_timeout, counts against the connection limits, and is closed with
 * 1001 "going away" on reload.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, rawRequest, request, TestServer, waitFor } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';
import {
  closeCode,
  connectWebSocket,
  connectWebSocketH2,
  EchoUpstream,
  OP_BINARY,
  OP_CLOSE,
  OP_TEXT,
  type WebSocketClient,
} from '../support/websocket.js';

const audited = (server: TestServer, event: string, test: (line: Record<string, unknown>) => boolean = () => true) =>
  waitFor(`audit ${event}`, () => server.logLines().find((line) => line.audit === event && test(line)));

/** The answer and the close of a refused handshake. */
async function refused(port: number, options: Parameters<typeof connectWebSocket>[1]): Promise<WebSocketClient> {
  const client = await connectWebSocket(port, options);
  await client.closed;
  return client;
}

describe('WebSocket over HTTP/1.1 and HTTP/2', () => {
  const server = new TestServer();
  const upstream = new EchoUpstream();
  let httpsPort = 0;
  let ca: TestCa;

  before(async () => {
    await upstream.listen();
    ca = new TestCa(server.dir);
    const site = ca.issue('site', ['ws.test', 'static.test', 'nows.test']);
    writeFileSync(path.join(server.dir, 'index.html'), 'static\n');
    httpsPort = await freePort();
    await server.start(
      `[ssl.domains."ws.test"]
cert_file = "${site.cert}"
key_file = "${site.key}"

[security.timeouts]
request_timeout = 3
header_read_timeout = 2
idle_timeout = 4
write_timeout = 3

[security.ids]
enabled = true
[[security.ids.rules]]
name = "no-wp"
pattern = "/wp-admin"
severity = "high"
action = "block"

[[vhosts]]
domains = ["ws.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstream.port}"

[[vhosts]]
domains = ["nows.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstream.port}"
websocket = false

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
      `https_port = ${httpsPort}\naccess_log = true\n`,
    );
  });
  after(async () => {
    await server.stop();
    await upstream.close();
  });

  it('101 passed through, frames echoed both ways (short, 16-bit and 64-bit lengths), the upstream told who the client is', async () => {
    const before = upstream.connections.length;
    const client = await connectWebSocket(server.port, {
      headers: { Origin: 'https://ws.test', 'Sec-WebSocket-Protocol': 'chat, superchat' },
    });
    assert.equal(client.status, 101);
    assert.equal(client.headers.upgrade?.toString().toLowerCase(), 'websocket');
    assert.equal(client.headers['sec-websocket-protocol'], 'chat');
    assert.equal(client.headers['x-upstream'], 'echo');
    client.send('hello');
    const echo = await client.reader.next();
    assert.equal(echo.opcode, OP_TEXT);
    assert.equal(echo.masked, false);
    assert.equal(echo.payload.toString(), 'hello');
    for (const size of [300, 70_000, 1_000_000]) {
      const payload = Buffer.alloc(size, size % 251);
      client.send(payload, OP_BINARY);
      const back = await client.reader.next();
      assert.equal(back.opcode, OP_BINARY);
      assert.ok(back.payload.equals(payload), `${size} bytes echoed`);
    }
    const seen = upstream.connections[before]!.request;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/chat');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers.origin, 'https://ws.test');
    assert.equal(seen.headers['sec-websocket-version'], '13');
    // The client's close is answered by the upstream's, through the tunnel.
    client.sendRaw(Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]));
    const close = await client.reader.next();
    assert.equal(close.opcode, OP_CLOSE);
    assert.equal(closeCode(close), 1000);
    await client.closed;
    const line = await waitFor('the access log line of the tunnel', () =>
      server.logLines().find((entry) => entry.access === true && entry.status === 101 && entry.event === 'upstream.websocket'),
    );
    assert.equal(line.aborted, false);
  });

  it('over TLS (wss://) with HTTP/1.1 too', async () => {
    const client = await connectWebSocket(httpsPort, { tlsCa: ca.certPem });
    assert.equal(client.status, 101);
    client.send('secure');
    assert.equal((await client.reader.next()).payload.toString(), 'secure');
    client.destroy();
  });

  it('RFC 8441: an extended CONNECT over HTTP/2 gets 200 and a tunnel; the upstream gets an HTTP/1.1 handshake with a key of ours', async () => {
    const before = upstream.connections.length;
    const client = await connectWebSocketH2(httpsPort, ca.certPem, { headers: { 'sec-websocket-protocol': 'chat' } });
    assert.equal(client.status, 200);
    assert.equal(client.headers['sec-websocket-protocol'], 'chat');
    assert.equal(client.headers['sec-websocket-accept'], undefined, 'not used over HTTP/2 (RFC 8441 §5)');
    client.send('over h2');
    assert.equal((await client.reader.next()).payload.toString(), 'over h2');
    const big = Buffer.alloc(200_000, 7);
    client.send(big, OP_BINARY);
    assert.ok((await client.reader.next()).payload.equals(big));
    const seen = upstream.connections[before]!.request;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.httpVersion, '1.1');
    assert.match(String(seen.headers['sec-websocket-key']), /^[A-Za-z0-9+/]{22}==$/);
    // The session serves other streams beside the tunnel.
    const other = client.session.request({ ':path': '/', ':authority': 'static.test' });
    const status = await new Promise<number>((resolve) => other.once('response', (headers) => resolve(Number(headers[':status']))));
    other.resume();
    assert.equal(status, 200);
    client.destroy();
  });

  it('an upgrade the route does not allow gets 403 from the catalogue, never a plain answer', async () => {
    for (const host of ['static.test', 'nows.test']) {
      const client = await refused(server.port, { host });
      assert.equal(client.status, 403, host);
    }
    const h2 = await connectWebSocketH2(httpsPort, ca.certPem, { host: 'static.test' });
    assert.equal(h2.status, 403);
    h2.destroy();
    await audited(server, 'request.upgrade_refused');
  });

  it('an Upgrade to another protocol is refused; Upgrade: h2c alone is served as HTTP/1.1 (curl --http2)', async () => {
    const other = await refused(server.port, { headers: { Upgrade: 'foo/2' } });
    assert.equal(other.status, 403);
    const out = execFileSync(
      'curl',
      [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code} %{http_version}',
        '--http2',
        '-H',
        'Host: static.test',
        `http://127.0.0.1:${server.port}/`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(out, '200 1.1');
  });

  it('a handshake that is not one: bad key, missing key, POST, a body, HTTP/1.0 get 400; another version gets 426 naming 13', async () => {
    const cases: [string, Parameters<typeof connectWebSocket>[1], number][] = [
      ['a key of 8 bytes', { headers: { 'Sec-WebSocket-Key': 'AAAAAAAAAAA=' } }, 400],
      ['no key', { headers: { 'Sec-WebSocket-Key': null } }, 400],
      ['a key that is not base64', { headers: { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' } }, 400],
      ['POST', { method: 'POST', headers: { 'Content-Length': '0' } }, 400],
      ['a body', { headers: { 'Content-Length': '5' } }, 400],
      ['version 8', { headers: { 'Sec-WebSocket-Version': '8' } }, 426],
    ];
    for (const [name, options, status] of cases) {
      const client = await refused(server.port, options);
      assert.equal(client.status, status, name);
      if (status === 426) assert.equal(client.headers['sec-websocket-version'], '13');
    }
    // RFC 6455 §4.1: HTTP/1.1 at least.
    const http10 = await rawRequest(
      server.port,
      'GET /chat HTTP/1.0\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    assert.match(http10, /^HTTP\/1\.1 400 /);
    await audited(server, 'request.websocket_bad_handshake');
    await audited(server, 'request.websocket_version');
    // Everyone else is still served.
    assert.equal((await request(server.port, { headers: { host: 'static.test' } })).status, 200);
  });

  it('the IDS sees the upgrade request: a blocked path is refused before any upstream sees it', async () => {
    const before = upstream.connections.length;
    const client = await refused(server.port, { path: '/wp-admin/socket' });
    assert.equal(client.status, 403);
    await audited(server, 'request.ids_blocked');
    assert.equal(upstream.connections.length, before);
  });

  it('an unmasked client frame never reaches the upstream: close 1002 to the client, audited', async () => {
    const before = upstream.connections.length;
    const client = await connectWebSocket(server.port);
    assert.equal(client.status, 101);
    client.send('masked is fine');
    assert.equal((await client.reader.next()).payload.toString(), 'masked is fine');
    client.sendRaw(Buffer.from([0x81, 0x05, ...Buffer.from('plain')]));
    const close = await client.reader.next();
    assert.equal(close.opcode, OP_CLOSE);
    assert.equal(closeCode(close), 1002);
    await client.closed;
    const connection = upstream.connections[before]!;
    await connection.closed;
    assert.deepEqual(
      connection.reader.frames.map((frame) => frame.payload.toString()),
      ['masked is fine'],
    );
    await audited(server, 'connection.protocol_error', (line) => String(line.detail).includes('unmasked'));
  });

  it('a tunnel outlives request_timeout and header_read_timeout, and closes after idle_timeout of silence', async () => {
    const client = await connectWebSocket(server.port);
    // request_timeout is 3 s: the tunnel is no request.
    for (let i = 0; i < 3; i++) {
      await sleep(1500);
      client.send(`still here ${i}`);
      assert.equal((await client.reader.next()).payload.toString(), `still here ${i}`);
    }
    const silentSince = Date.now();
    await client.closed;
    // idle_timeout is 4 s; generous bounds either side.
    assert.ok(Date.now() - silentSince >= 3000, 'closed for being idle, not sooner');
  });

  it('a gigabyte frame trickled, then silence: cut at idle_timeout, nothing buffered, others served', async () => {
    const client = await connectWebSocket(server.port);
    // FIN, binary, masked, 64-bit length 2^30.
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
    client.sendRaw(header);
    for (let i = 0; i < 5; i++) {
      client.sendRaw(Buffer.alloc(1024, i));
      await sleep(200);
    }
    assert.equal((await request(server.port, { headers: { host: 'static.test' } })).status, 200);
    await client.closed;
  });

  it('a reload closes an HTTP/2 tunnel with 1001 too, on its stream, and the session is told GOAWAY', async () => {
    const client = await connectWebSocketH2(httpsPort, ca.certPem);
    client.send('h2 before reload');
    assert.equal((await client.reader.next()).payload.toString(), 'h2 before reload');
    const goaway = new Promise<void>((resolve) => client.session.once('goaway', () => resolve()));
    process.kill(server.masterPid(), 'SIGHUP');
    const close = await client.reader.next(20_000);
    assert.equal(close.opcode, OP_CLOSE);
    assert.equal(closeCode(close), 1001);
    await goaway;
    client.destroy();
    await waitFor('the new generation', () =>
      server.status().workers.every((worker) => worker.generation === 2 && worker.state === 'ready'),
    );
  });

  it('an upstream that stops reading: the tunnel is cut at write_timeout, the client is not held', async () => {
    const stalled = await new EchoUpstream({ stopReading: true }).listen();
    const stalledServer = new TestServer();
    try {
      await stalledServer.start(
        `[security.timeouts]\nwrite_timeout = 2\nidle_timeout = 60\n[[vhosts]]\ndomains = ["*"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:${stalled.port}"\n`,
      );
      const client = await connectWebSocket(stalledServer.port);
      assert.equal(client.status, 101);
      // A gigabyte frame, written as fast as the client may: backpressure stops it, the stall cuts it.
      client.sendRaw(Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]));
      const chunk = Buffer.alloc(256 * 1024, 1);
      let sent = 0;
      const closedAt = client.closed.then(() => Date.now());
      while (!client.duplex.destroyed && sent < 1 << 30) {
        if (!client.sendRaw(chunk)) await Promise.race([new Promise((resolve) => client.duplex.once('drain', resolve)), client.closed]);
        sent += chunk.length;
      }
      await closedAt;
      assert.ok(sent < 256 * 1024 * 1024, `the client got to send only what the buffers hold (${sent} bytes)`);
    } finally {
      await stalledServer.stop();
      await stalled.close();
    }
  });
});

describe('WebSocket on routes: the route decides, behind its auth and access lists', () => {
  const server = new TestServer();
  const upstream = new EchoUpstream();

  before(async () => {
    await upstream.listen();
    writeFileSync(path.join(server.dir, 'index.html'), 'static\n');
    const htpasswd = path.join(server.dir, 'htpasswd');
    execFileSync('htpasswd', ['-cbB', htpasswd, 'alice', 'secret'], { stdio: 'ignore' });
    const route = (prefix: string, extra = ''): string =>
      `[[vhosts.routes]]\npath = "${prefix}"\n[vhosts.routes.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:${upstream.port}"\n${extra}`;
    await server.start(
      `[[vhosts]]
domains = ["*"]
root = "${server.dir}"
${route('/api/')}
${route('/private/')}[vhosts.routes.auth]
htpasswd = "${htpasswd}"
realm = "ws"
${route('/office/')}[vhosts.routes.access]
allow = ["10.0.0.0/8"]
${route('/nows/', 'websocket = false\n')}`,
    );
  });
  after(async () => {
    await server.stop();
    await upstream.close();
  });

  it('a proxy route switches; the static vhost around it and a route with websocket = false refuse', async () => {
    const client = await connectWebSocket(server.port, { path: '/api/live' });
    assert.equal(client.status, 101);
    client.send('routed');
    assert.equal((await client.reader.next()).payload.toString(), 'routed');
    client.destroy();
    assert.equal((await refused(server.port, { path: '/live' })).status, 403);
    assert.equal((await refused(server.port, { path: '/nows/live' })).status, 403);
  });

  it("a route's basic auth and access list hold for the upgrade too", async () => {
    assert.equal((await refused(server.port, { path: '/private/live' })).status, 401);
    const authorized = await connectWebSocket(server.port, {
      path: '/private/live',
      headers: { Authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` },
    });
    assert.equal(authorized.status, 101);
    authorized.destroy();
    assert.equal((await refused(server.port, { path: '/office/live' })).status, 403);
    await audited(server, 'request.access_denied');
  });
});

describe('WebSocket: an upstream that does not switch, or switches wrongly', () => {
  const server = new TestServer();
  const refusing = new EchoUpstream({
    answer: () => 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nno room\n',
  });
  const lying = new EchoUpstream({
    answer: () =>
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n',
  });

  before(async () => {
    await refusing.listen();
    await lying.listen();
    const proxy = (domain: string, port: number): string =>
      `[[vhosts]]\ndomains = ["${domain}"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:${port}"\n`;
    await server.start(`${proxy('refusing.test', refusing.port)}${proxy('lying.test', lying.port)}`, 'access_log = true\n');
  });
  after(async () => {
    await server.stop();
    await refusing.close();
    await lying.close();
  });

  it("the upstream's refusal reaches the client as it is, and the connection closes", async () => {
    const client = await refused(server.port, { host: 'refusing.test' });
    assert.equal(client.status, 403);
  });

  it('a 101 with a wrong Sec-WebSocket-Accept is not a switch: 502, logged with why', async () => {
    const client = await refused(server.port, { host: 'lying.test' });
    assert.equal(client.status, 502);
    await waitFor('the access log line', () =>
      server
        .logLines()
        .find((line) => line.access === true && line.status === 502 && String(line.detail).includes('wrong Sec-WebSocket-Accept')),
    );
  });
});

describe('WebSocket: connection limits, metrics, drain', () => {
  const server = new TestServer();
  const upstream = new EchoUpstream();
  let metricsPort = 0;

  before(async () => {
    await upstream.listen();
    metricsPort = await freePort();
    await server.start(
      `[security.limits]
max_connections_per_ip = 2
[security.timeouts]
connection_rate_per_ip = 1000000
[server.metrics]
enabled = true
port = ${metricsPort}
[[vhosts]]
domains = ["*"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstream.port}"
`,
      'workers = 1\n',
    );
  });
  after(async () => {
    await server.stop();
    await upstream.close();
  });

  it('tunnels count against max_connections_per_ip, and are counted as 101s once closed', async () => {
    const a = await connectWebSocket(server.port);
    const b = await connectWebSocket(server.port);
    assert.equal(a.status, 101);
    assert.equal(b.status, 101);
    // The third connection from the same address is refused at accept.
    await assert.rejects(
      connectWebSocket(server.port).then(() => {
        throw new Error('connected');
      }),
      (error: Error) => error.message !== 'connected',
    );
    // Another address is served.
    const other = await connectWebSocket(server.port, { localAddress: '127.0.0.5' });
    assert.equal(other.status, 101);
    for (const client of [a, b, other]) client.destroy();
    await waitFor('101 in the metrics', async () => {
      const text = (await request(metricsPort, { path: '/metrics' })).body;
      return /miwidothttp_requests_total\{[^}]*status="101"[^}]*\} [1-9]/.test(text);
    });
  });

  it('a reload says 1001 "going away" to the client and to the upstream (masked), at frame boundaries', async () => {
    const before = upstream.connections.length;
    const client = await connectWebSocket(server.port);
    client.send('before reload');
    assert.equal((await client.reader.next()).payload.toString(), 'before reload');
    process.kill(server.masterPid(), 'SIGHUP');
    const close = await client.reader.next(20_000);
    assert.equal(close.opcode, OP_CLOSE);
    assert.equal(closeCode(close), 1001);
    const connection = upstream.connections[before]!;
    await connection.closed;
    const upstreamClose = connection.reader.frames.find((frame) => frame.opcode === OP_CLOSE);
    assert.ok(upstreamClose, 'the upstream got a close frame');
    assert.equal(upstreamClose.masked, true);
    assert.equal(closeCode(upstreamClose), 1001);
    await client.closed;
    // The new generation serves WebSocket.
    const after = await waitFor('a tunnel after the reload', async () => {
      try {
        const next = await connectWebSocket(server.port);
        return next.status === 101 ? next : null;
      } catch {
        return null;
      }
    });
    after.send('after reload');
    assert.equal((await after.reader.next()).payload.toString(), 'after reload');
    after.destroy();
  });
});
