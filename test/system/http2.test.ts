/**
 * HTTP/2 by ALPN on the HTTPS listener (issue 6), against a real,
 * sandboxed server with two workers: curl and node:http2 get h2 while
 * HTTP/1.1 clients on the same port still get HTTP/1.1; an h2 request goes
 * through the same pipeline (limits, IDS, body limits, static, proxy sent
 * upstream as HTTP/1.1) with the security headers; the HTTP/2 limits
 * (max_concurrent_streams, header list size) and the rapid-reset defence
 * (CVE-2023-44487) refuse with GOAWAY or RST_STREAM and an audit event while
 * other clients are served; idle, slow and stalled sessions are closed;
 * a reload lets a stream in flight finish after GOAWAY.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { cli, freePort, listenLocal, proxyVhost, rawRequest, TestServer, waitFor } from '../support/harness.js';
import { h2Connect, h2Get, h2Request } from '../support/h2-client.js';
import { ERROR_CODE, FLAG, FRAME, frame, getRequest, headerBlock, RawH2Client, rstStream, SETTING } from '../support/h2-raw.js';
import { siteCertificate } from '../support/test-ca.js';

/** What the upstream saw of a proxied request. */
interface Seen {
  version: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  names: string[];
  bodyBytes: number;
}

function echoUpstream(): http.Server {
  return http.createServer((req, res) => {
    if (req.url === '/slow') {
      setTimeout(() => res.end('slow done\n'), 1500);
      return;
    }
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    req.on('end', () => {
      const seen: Seen = {
        version: req.httpVersion,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        names: req.rawHeaders.filter((_, i) => i % 2 === 0),
        bodyBytes,
      };
      // Hop-by-hop fields an HTTP/1.1 upstream may send: none may reach an h2 client (RFC 9113 §8.2.2).
      res.writeHead(200, [
        'Content-Type',
        'application/json',
        'Connection',
        'keep-alive, X-Hop',
        'Keep-Alive',
        'timeout=5',
        'X-Hop',
        'for this hop only',
        'Set-Cookie',
        'u1=1',
        'Set-Cookie',
        'u2=2',
      ]);
      res.end(JSON.stringify(seen));
    });
  });
}

/** curl's answer: HTTP version and status, and the response head. */
function curl(args: string[]): { version: string; status: number; head: string } {
  const out = execFileSync('curl', ['-k', '-sS', '-D', '-', '-o', '/dev/null', '-w', '\n%{http_version} %{http_code}', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  const lines = out.trimEnd().split('\n');
  const [version, status] = lines.at(-1)!.split(' ');
  return { version: version!, status: Number(status), head: lines.slice(0, -1).join('\n') };
}

/** The first frame of `client`'s answer on `streamId`, HEADERS: its first HPACK byte, which for common statuses is a static-table index (RFC 7541 Appendix A). */
const STATIC_STATUS: Record<number, number> = { 136: 200, 140: 400, 142: 500 };

async function rawStatus(client: RawH2Client, streamId: number, timeoutMs = 5000): Promise<number | null> {
  const headers = await client.waitFor((f) => f.type === FRAME.HEADERS && f.streamId === streamId, timeoutMs);
  return headers === null ? null : (STATIC_STATUS[headers.payload[0]!] ?? -1);
}

const audited = (
  server: TestServer,
  event: string,
  test: (line: Record<string, unknown>) => boolean = () => true,
): Promise<Record<string, unknown>> =>
  waitFor(`audit ${event}`, () => server.logLines().find((line) => line.audit === event && test(line)));

/**
 * Starts `server` with HTTPS on a free port (its number is returned): a
 * certificate for site.test and api.test, `config`, api.test proxied to
 * `upstream`, every other name served from the server's folder, whose
 * index.html is `page`.
 */
async function startSite(server: TestServer, upstream: http.Server, page: string, config: string): Promise<number> {
  writeFileSync(path.join(server.dir, 'index.html'), page);
  const tlsSite = siteCertificate(server.dir, ['site.test', 'api.test']);
  const port = await freePort();
  const upstreamPort = await listenLocal(upstream);
  await server.start(
    `${tlsSite}
${config}

${proxyVhost('api.test', upstreamPort)}
[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
    `https_port = ${port}\n`,
  );
  return port;
}

describe('HTTP/2 on the HTTPS listener', () => {
  const server = new TestServer();
  const upstream = echoUpstream();
  let port = 0;

  before(async () => {
    port = await startSite(
      server,
      upstream,
      'over h2\n',
      `[security.limits]
max_concurrent_streams = 8
max_body_size = 4096

[security.ids]
enabled = true

[security.ddos]
whitelist = ["127.0.0.1"]`,
    );
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it('curl --http2 gets h2, with the security headers', () => {
    const answer = curl(['--http2', '--resolve', `site.test:${port}:127.0.0.1`, `https://site.test:${port}/`]);
    assert.equal(answer.version, '2');
    assert.equal(answer.status, 200);
    assert.match(answer.head, /^strict-transport-security: max-age=31536000; includeSubDomains$/m);
    assert.match(answer.head, /^x-frame-options: DENY$/m);
    assert.match(answer.head, /^x-content-type-options: nosniff$/m);
    assert.match(answer.head, /^content-security-policy: /m);
  });

  it('HTTP/1.1 clients on the same port still get HTTP/1.1: curl --http1.1, and a client without ALPN', async () => {
    const answer = curl(['--http1.1', '--resolve', `site.test:${port}:127.0.0.1`, `https://site.test:${port}/`]);
    assert.equal(answer.version, '1.1');
    assert.equal(answer.status, 200);
    const text = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'site.test', rejectUnauthorized: false }, () => {
        assert.equal(socket.alpnProtocol, false);
        socket.write('GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n');
      });
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
      socket.on('end', () => resolve(received));
      socket.on('error', reject);
    });
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\nStrict-Transport-Security: /i);
  });

  it('plain HTTP stays HTTP/1.1 (no h2c): an Upgrade to h2c is ignored, the prior-knowledge preface refused with 400, audited', async () => {
    const upgrade = curl(['--http2', `http://127.0.0.1:${server.port}/`]);
    assert.equal(upgrade.version, '1.1');
    assert.equal(upgrade.status, 200);
    const answer = await rawRequest(server.port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    await audited(server, 'request.malformed', (line) => line.detail === 'HPE_PAUSED_H2_UPGRADE');
  });

  it('ALPN: the server prefers h2; a client offering nothing it speaks gets an alert', async () => {
    const alpn = (protocols: string[]): Promise<string | false | null> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect(
          { host: '127.0.0.1', port, servername: 'site.test', rejectUnauthorized: false, ALPNProtocols: protocols },
          () => {
            resolve(socket.alpnProtocol);
            socket.destroy();
          },
        );
        socket.on('error', reject);
      });
    assert.equal(await alpn(['http/1.1', 'h2']), 'h2');
    assert.equal(await alpn(['http/1.1']), 'http/1.1');
    await assert.rejects(alpn(['spdy/3.1']), /no application protocol|NO_APPLICATION_PROTOCOL/i);
    assert.equal((await h2Get(port, 'site.test')).status, 200, 'and serves on');
  });

  it('static files over h2: HEAD, ranges, revalidation', async () => {
    const session = await h2Connect(port, 'site.test');
    const get = await h2Request(session, { ':path': '/', ':authority': 'site.test' });
    assert.equal(get.body, 'over h2\n');
    const head = await h2Request(session, { ':method': 'HEAD', ':path': '/', ':authority': 'site.test' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const range = await h2Request(session, { ':path': '/', ':authority': 'site.test', range: 'bytes=0-3' });
    assert.equal(range.status, 206);
    assert.equal(range.body, 'over');
    const again = await h2Request(session, { ':path': '/', ':authority': 'site.test', 'if-none-match': String(get.headers.etag) });
    assert.equal(again.status, 304);
    session.close();
  });

  it('the proxy sends an h2 request upstream as HTTP/1.1: Host from :authority, no pseudo-headers, hop-by-hop gone both ways', async () => {
    const session = await h2Connect(port, 'api.test');
    const answer = await h2Request(session, {
      ':path': '/echo?x=1',
      ':authority': 'api.test',
      cookie: ['a=1', 'b=2'],
      te: 'trailers',
      'x-custom': 'kept',
    });
    session.close();
    assert.equal(answer.status, 200);
    const seen = JSON.parse(answer.body) as Seen;
    assert.equal(seen.version, '1.1');
    assert.equal(seen.url, '/echo?x=1');
    assert.equal(seen.headers.host, 'api.test');
    assert.deepEqual(
      seen.names.filter((name) => name.startsWith(':')),
      [],
    );
    assert.equal(seen.headers.cookie, 'a=1; b=2', 'cookie crumbs joined (RFC 9113 §8.2.3)');
    // TE: trailers says this proxy takes trailer fields, which it relays: said again upstream (RFC 9113 §8.2.2 allows only it).
    assert.equal(seen.headers.te, 'trailers');
    assert.equal(seen.headers['x-custom'], 'kept');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], 'api.test');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
    assert.deepEqual(answer.headers['set-cookie'], ['u1=1', 'u2=2']);
    for (const name of ['connection', 'keep-alive', 'x-hop']) assert.equal(answer.headers[name], undefined, name);
    assert.match(String(answer.headers['strict-transport-security']), /^max-age=/);
  });

  // Every refusal over h2: its status, its audit event, and the same session serving the next request.
  const refusals: { name: string; headers: Record<string, string | string[]>; body?: string; status: number; event: string }[] = [
    {
      name: 'more than max_headers fields',
      headers: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`x-field-${i}`, 'v'])),
      status: 431,
      event: 'request.too_many_headers',
    },
    {
      name: 'a name over max_header_name_len',
      headers: { [`x-${'n'.repeat(300)}`]: 'v' },
      status: 431,
      event: 'request.header_name_too_long',
    },
    {
      name: 'a value over max_header_value_len',
      headers: { 'x-long': 'v'.repeat(5000) },
      status: 431,
      event: 'request.header_value_too_long',
    },
    {
      name: 'a header list over max_header_size (in its HTTP/1.1 size)',
      headers: { 'x-a': 'a'.repeat(3000), 'x-b': 'b'.repeat(3000), 'x-c': 'c'.repeat(3000) },
      status: 431,
      event: 'request.headers_too_large',
    },
    { name: 'a URL over max_url_length', headers: { ':path': `/${'u'.repeat(9000)}` }, status: 414, event: 'request.url_too_long' },
    {
      name: 'an IDS match in the query',
      headers: { ':path': '/search?q=%3Cscript%3Ealert(1)%3C/script%3E' },
      status: 403,
      event: 'request.ids_blocked',
    },
    {
      name: 'a Content-Length over max_body_size',
      headers: { ':method': 'POST', ':path': '/upload', ':authority': 'api.test', 'content-length': '10000' },
      body: 'x'.repeat(10000),
      status: 413,
      event: 'request.body_too_large',
    },
    {
      name: 'a body without Content-Length passing max_body_size',
      headers: { ':method': 'POST', ':path': '/upload', ':authority': 'api.test' },
      body: 'x'.repeat(10000),
      status: 413,
      event: 'request.body_too_large',
    },
  ];
  for (const refusal of refusals) {
    it(`refuses ${refusal.name}: ${refusal.status}, audited, the session serves on`, async () => {
      const before = server.logLines().filter((line) => line.audit === refusal.event).length;
      const session = await h2Connect(port, 'site.test');
      const answer = await h2Request(session, { ':path': '/', ':authority': 'site.test', ...refusal.headers }, refusal.body);
      assert.equal(answer.status, refusal.status);
      assert.match(String(answer.headers['strict-transport-security']), /^max-age=/, 'security headers on the error answer');
      await waitFor(`audit ${refusal.event}`, () => server.logLines().filter((line) => line.audit === refusal.event).length > before);
      assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
      session.close();
    });
  }

  it("what node:http2 will not send: a Host unlike :authority (400, audited); no host, TE, Connection, a control character are nghttp2's (RST_STREAM, field dropped)", async () => {
    const client = await RawH2Client.connect(port, 'api.test');
    await client.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, getRequest('api.test', '/', [['host', 'other.test']])));
    assert.equal(await rawStatus(client, 1), 400);
    await client.write(
      frame(
        FRAME.HEADERS,
        FLAG.END_HEADERS | FLAG.END_STREAM,
        3,
        headerBlock([
          [':method', 'GET'],
          [':scheme', 'https'],
          [':path', '/'],
        ]),
      ),
    );
    await client.write(
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 5, getRequest('api.test', '/', [['transfer-encoding', 'chunked']])),
    );
    await client.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 7, getRequest('api.test', '/', [['connection', 'close']])));
    await client.waitFor((f) => f.type === FRAME.RST_STREAM && f.streamId === 7, 5000);
    assert.equal(client.resetCode(3), ERROR_CODE.PROTOCOL_ERROR, 'neither :authority nor Host');
    assert.equal(client.resetCode(5), ERROR_CODE.PROTOCOL_ERROR);
    assert.equal(client.resetCode(7), ERROR_CODE.PROTOCOL_ERROR);
    // nghttp2 drops a field whose value holds a control character (Node asks it to, rather than reset the stream):
    // the request is served without it, and nothing of it goes upstream.
    await client.write(
      frame(
        FRAME.HEADERS,
        FLAG.END_HEADERS | FLAG.END_STREAM,
        9,
        getRequest('api.test', '/', [
          ['x-bad', 'a\x01b'],
          ['x-good', 'ok'],
        ]),
      ),
    );
    assert.equal(await rawStatus(client, 9), 200, 'the connection serves on');
    await client.waitFor((f) => f.type === FRAME.DATA && f.streamId === 9 && (f.flags & FLAG.END_STREAM) !== 0, 5000);
    const body = Buffer.concat(client.frames.filter((f) => f.type === FRAME.DATA && f.streamId === 9).map((f) => f.payload)).toString(
      'utf8',
    );
    const seen = JSON.parse(body) as Seen;
    assert.equal(seen.headers['x-good'], 'ok');
    assert.equal(seen.headers['x-bad'], undefined);
    client.destroy();
    await audited(server, 'request.duplicate_host');
  });

  it('a header list past twice the limit is refused by nghttp2 itself (RST_STREAM ENHANCE_YOUR_CALM); the session serves on', async () => {
    const session = await h2Connect(port, 'site.test');
    const huge = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`x-huge-${i}`, 'h'.repeat(3900)]));
    const refused = await h2Request(session, { ':path': '/', ':authority': 'site.test', ...huge }).then(
      () => null,
      (error: { rstCode?: number }) => error.rstCode,
    );
    assert.equal(refused, ERROR_CODE.ENHANCE_YOUR_CALM);
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
    session.close();
  });

  it('max_concurrent_streams is advertised and honoured by a well-behaved client', async () => {
    const session = await h2Connect(port, 'api.test');
    assert.equal(session.remoteSettings.maxConcurrentStreams, 8);
    assert.ok(session.remoteSettings.maxHeaderListSize! >= 8192, 'SETTINGS_MAX_HEADER_LIST_SIZE derived from max_header_size');
    // Twelve slow requests at once: node:http2 queues the ones past 8, and all are served.
    const answers = await Promise.all(Array.from({ length: 12 }, () => h2Request(session, { ':path': '/slow', ':authority': 'api.test' })));
    assert.deepEqual(new Set(answers.map((answer) => answer.status)), new Set([200]));
    session.close();
  });

  it('a client that opens more streams than max_concurrent_streams is refused (GOAWAY PROTOCOL_ERROR), audited; others are served', async () => {
    const client = await RawH2Client.connect(port, 'api.test');
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 5000);
    await sleep(100);
    const streams: Buffer[] = [];
    for (let i = 0; i < 20; i++)
      streams.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1 + 2 * i, getRequest('api.test', '/slow')));
    await client.write(Buffer.concat(streams));
    const other = h2Get(port, 'site.test');
    const refused = await client.waitFor(
      (f) => f.type === FRAME.GOAWAY || (f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === ERROR_CODE.REFUSED_STREAM),
      5000,
    );
    assert.ok(refused, 'GOAWAY or REFUSED_STREAM');
    if (refused.type === FRAME.GOAWAY) assert.equal(client.goaway()!.code, ERROR_CODE.PROTOCOL_ERROR);
    assert.equal((await other).status, 200);
    client.destroy();
    await audited(server, 'connection.protocol_error');
    assert.equal((await h2Get(port, 'site.test')).status, 200);
  });

  /** Opens streams and resets each at once, `perWrite` pairs a write, until the server closes or `total` were sent. */
  async function rapidReset(
    client: RawH2Client,
    perWrite: number,
    total: number,
    pauseMs: number,
    duringAttack: () => void,
  ): Promise<number> {
    let nextStream = 1;
    let writes = 0;
    while ((nextStream - 1) / 2 < total && !client.closed) {
      const burst: Buffer[] = [];
      for (let i = 0; i < perWrite; i++) {
        burst.push(
          frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, nextStream, getRequest('site.test', '/')),
          rstStream(nextStream, ERROR_CODE.CANCEL),
        );
        nextStream += 2;
      }
      await client.write(Buffer.concat(burst));
      if (++writes === 2) duringAttack();
      await sleep(pauseMs);
    }
    return (nextStream - 1) / 2;
  }

  // The allowance is 2 x max_concurrent_streams = 16 resets (refilled at 33/s); nghttp2's own limit, 4 x that.
  // Each from its own address: the audit writes one such event a second per client.
  const rapidResetCases: { name: string; perWrite: number; pauseMs: number; codes: number[]; from: string }[] = [
    {
      name: 'a trickle that JavaScript sees whole meets our allowance: GOAWAY ENHANCE_YOUR_CALM',
      perWrite: 4,
      pauseMs: 5,
      codes: [ERROR_CODE.ENHANCE_YOUR_CALM],
      from: '127.0.0.41',
    },
    {
      name: "a flood past what JavaScript is shown per read meets nghttp2's limit first: GOAWAY, audited all the same",
      perWrite: 50,
      pauseMs: 2,
      codes: [ERROR_CODE.ENHANCE_YOUR_CALM, ERROR_CODE.INTERNAL_ERROR],
      from: '127.0.0.42',
    },
  ];
  for (const attack of rapidResetCases) {
    it(`rapid reset (CVE-2023-44487), ${attack.name}; the connection is closed after a bounded number, a normal client is served meanwhile and after`, async (t) => {
      const client = await RawH2Client.connect(port, 'site.test', { localAddress: attack.from });
      await client.waitFor((f) => f.type === FRAME.SETTINGS, 5000);
      let normal: Promise<number> | null = null;
      const sent = await rapidReset(client, attack.perWrite, 5000, attack.pauseMs, () => {
        normal = h2Get(port, 'site.test').then((answer) => answer.status);
      });
      await Promise.race([client.closedPromise, sleep(5000)]);
      assert.equal(client.closed, true, 'the connection is closed');
      const goaway = client.goaway();
      assert.ok(goaway, 'GOAWAY before the close');
      assert.ok(attack.codes.includes(goaway.code), `GOAWAY code ${goaway.code}`);
      assert.ok(goaway.lastStreamId < 2 * 200, `stopped at stream ${goaway.lastStreamId}`);
      const line = await audited(server, 'connection.rapid_reset', (entry) => entry.clientIp === attack.from);
      t.diagnostic(
        `sent ${sent} HEADERS+RST_STREAM; GOAWAY code ${goaway.code}, last stream ${goaway.lastStreamId}; audit: ${String(line.detail)}`,
      );
      assert.ok(normal !== null, 'the attack lasted long enough for a normal request');
      assert.equal(await normal, 200, 'served during the attack');
      assert.equal((await h2Get(port, 'site.test')).status, 200, 'served after it');
    });
  }
});

describe('HTTP/2 sessions: idle, slow, stalled, limited, drained', () => {
  const server = new TestServer();
  const upstream = echoUpstream();
  let port = 0;

  before(async () => {
    writeFileSync(path.join(server.dir, 'big.bin'), Buffer.alloc(512 * 1024, 7));
    port = await startSite(
      server,
      upstream,
      'sessions\n',
      `[security.timeouts]
header_read_timeout = 2
keepalive_timeout = 3
idle_timeout = 20
write_timeout = 2

[security.anti_smuggling]
max_request_per_connection = 5`,
    );
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  const goawayOf = (session: ClientHttp2Session): Promise<number> =>
    new Promise((resolve) => session.once('goaway', (code: number) => resolve(code)));

  it('an idle session gets GOAWAY after keepalive_timeout and is closed', async () => {
    const session = await h2Connect(port, 'site.test');
    const goaway = goawayOf(session);
    const closed = new Promise((resolve) => session.once('close', resolve));
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
    const started = performance.now();
    assert.equal(await goaway, 0, 'GOAWAY NO_ERROR');
    await closed;
    const waited = performance.now() - started;
    assert.ok(waited >= 2500 && waited < 7000, `closed after ${Math.round(waited)} ms`);
  });

  it('max_request_per_connection: the fifth stream is served, then GOAWAY', async () => {
    const session = await h2Connect(port, 'site.test');
    const goaway = goawayOf(session);
    for (let i = 0; i < 5; i++) assert.equal((await h2Request(session, { ':path': '/', ':authority': 'site.test' })).status, 200);
    assert.equal(await goaway, 0);
    session.destroy();
  });

  it('a header block that never ends is cut after header_read_timeout (GOAWAY), audited as a slow client', async () => {
    const client = await RawH2Client.connect(port, 'site.test');
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 5000);
    // HEADERS without END_HEADERS: nghttp2 waits for a CONTINUATION that never comes; no request exists yet.
    await client.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, getRequest('site.test', '/', [['x-padding', 'p'.repeat(1500)]])));
    const started = performance.now();
    await Promise.race([client.closedPromise, sleep(8000)]);
    assert.equal(client.closed, true);
    const waited = performance.now() - started;
    assert.ok(waited >= 1500 && waited < 6000, `cut after ${Math.round(waited)} ms`);
    assert.equal(client.goaway()?.code, ERROR_CODE.ENHANCE_YOUR_CALM);
    await audited(server, 'request.slow_client', (line) => String(line.detail).startsWith('HTTP/2'));
  });

  it('a client that never acknowledges our SETTINGS is cut after header_read_timeout (GOAWAY SETTINGS_TIMEOUT), audited', async () => {
    const client = await RawH2Client.connect(port, 'site.test', { ackSettings: false });
    const started = performance.now();
    await Promise.race([client.closedPromise, sleep(8000)]);
    assert.equal(client.closed, true);
    const waited = performance.now() - started;
    assert.ok(waited >= 1500 && waited < 4000, `cut after ${Math.round(waited)} ms`);
    assert.equal(client.goaway()?.code, ERROR_CODE.SETTINGS_TIMEOUT);
    await audited(server, 'connection.settings_timeout');
  });

  it('a stream stalled behind its flow-control window is reset after write_timeout, audited; the connection serves on', async () => {
    // A window of 0: the server may send no DATA at all until the client says so, which it never does.
    const client = await RawH2Client.connect(port, 'site.test', { settings: [[SETTING.INITIAL_WINDOW_SIZE, 0]] });
    await client.waitFor((f) => f.type === FRAME.SETTINGS, 5000);
    await client.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, getRequest('site.test', '/big.bin')));
    assert.equal(await rawStatus(client, 1), 200);
    const reset = await client.waitFor((f) => f.type === FRAME.RST_STREAM && f.streamId === 1, 8000);
    assert.ok(reset, 'RST_STREAM on the stalled stream');
    assert.equal(reset.payload.readUInt32BE(0), ERROR_CODE.CANCEL);
    await audited(server, 'response.write_timeout', (line) => String(line.detail).includes('HTTP/2 stream 1'));
    // HEADERS are not flow-controlled: a HEAD on the same connection is still answered.
    await client.write(
      frame(
        FRAME.HEADERS,
        FLAG.END_HEADERS | FLAG.END_STREAM,
        3,
        headerBlock([
          [':method', 'HEAD'],
          [':scheme', 'https'],
          [':authority', 'site.test'],
          [':path', '/'],
        ]),
      ),
    );
    assert.equal(await rawStatus(client, 3), 200);
    assert.equal(client.closed, false);
    client.destroy();
  });

  it('a reload drains h2: GOAWAY at once, the stream in flight finishes, the session closes; new connections are served', async () => {
    const session = await h2Connect(port, 'api.test');
    const goaway = goawayOf(session);
    const closed = new Promise((resolve) => session.once('close', resolve));
    const inFlight = h2Request(session, { ':path': '/slow', ':authority': 'api.test' });
    await sleep(200);
    const reload = cli(['reload', '-c', server.configFile]);
    assert.equal(reload.status, 0, reload.stderr);
    assert.equal(await goaway, 0, 'GOAWAY NO_ERROR');
    const answer = await inFlight;
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'slow done\n');
    await closed;
    assert.equal((await h2Get(port, 'site.test')).status, 200);
  });
});

describe('HTTP/2 idle_timeout: no byte either way, requests in flight or not', () => {
  const server = new TestServer();
  // An upstream that takes the request and never answers: nothing moves on the client's session.
  const silent = http.createServer(() => undefined);
  let port = 0;

  before(async () => {
    port = await startSite(
      server,
      silent,
      'idle\n',
      `[security.timeouts]
keepalive_timeout = 1
idle_timeout = 2`,
    );
  });
  after(async () => {
    await server.stop();
    silent.closeAllConnections();
    silent.close();
  });

  it('a session whose one request waits on a silent upstream is closed after idle_timeout; a new session is served', async () => {
    const session = await h2Connect(port, 'api.test');
    const closed = new Promise<boolean>((resolve) => session.once('close', () => resolve(true)));
    const stream = session.request({ ':path': '/never', ':authority': 'api.test' });
    stream.on('error', () => undefined);
    const started = performance.now();
    assert.equal(await Promise.race([closed, sleep(8000).then(() => false)]), true, 'the session was closed');
    const waited = performance.now() - started;
    // The sweep looks once a second: between idle_timeout and a second or so past it.
    assert.ok(waited >= 1500 && waited < 5000, `closed after ${Math.round(waited)} ms`);
    const fresh = await h2Connect(port, 'site.test');
    assert.equal((await h2Request(fresh, { ':path': '/', ':authority': 'site.test' })).status, 200);
    fresh.destroy();
  });
});

describe('HTTP/2 behind the PROXY protocol: client IP, rate limits', () => {
  const server = new TestServer();
  let port = 0;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'proxied h2\n');
    const tlsSite = siteCertificate(server.dir);
    port = await freePort();
    await server.start(
      `${tlsSite}
[security.proxy_protocol]
enabled = true
trusted_proxies = ["127.0.0.1"]

[security.rate_limiting]
enabled = true
requests_per_second = 1
burst_size = 3

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
      `https_port = ${port}\naccess_log = true\n`,
    );
  });
  after(() => server.stop());

  /** An h2 session whose TCP connection starts with a PROXY header naming `clientIp`. */
  const viaProxy = (clientIp: string): Promise<ClientHttp2Session> =>
    h2Connect(port, 'site.test', {
      createConnection: () => {
        const raw = net.connect(port, '127.0.0.1');
        raw.write(`PROXY TCP4 ${clientIp} 127.0.0.1 40000 443\r\n`);
        return tls.connect({ socket: raw, servername: 'site.test', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      },
    });

  it("an h2 request is the PROXY header's client, in the access log", async () => {
    const session = await viaProxy('198.51.100.23');
    assert.equal((await h2Request(session, { ':path': '/?via=h2', ':authority': 'site.test' })).status, 200);
    session.close();
    const line = await waitFor('the access log line', () =>
      server.logLines().find((entry) => entry.access === true && entry.clientIp === '198.51.100.23'),
    );
    assert.equal(line.status, 200);
  });

  it('rate limits apply per client to h2 streams: past the burst, 429 with Retry-After, audited', async () => {
    const session = await viaProxy('198.51.100.77');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const answer = await h2Request(session, { ':path': '/', ':authority': 'site.test' });
      statuses.push(answer.status);
      if (answer.status === 429) assert.ok(Number(answer.headers['retry-after']) >= 1);
    }
    session.close();
    assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
    assert.ok(statuses.includes(429), statuses.join(','));
    await audited(server, 'request.rate_limited', (line) => line.clientIp === '198.51.100.77');
    const other = await viaProxy('198.51.100.78');
    assert.equal((await h2Request(other, { ':path': '/', ':authority': 'site.test' })).status, 200, 'another client is not limited');
    other.close();
  });
});
