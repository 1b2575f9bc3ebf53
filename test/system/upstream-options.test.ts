/**
 * Upstream options through the real, sandboxed server (issue 13): unix:
 * targets reached from inside the workers' jail (the operator's chroot and
 * the default jail; a socket in its own directory and one alone in /tmp),
 * https:// targets with a CA file, server_name and a client certificate
 * (mTLS), a self-signed upstream answered 502 with why in the log, verify =
 * false, HTTP/2 to a gRPC-shaped upstream with its trailers passed through,
 * and active health checks taking a target out and bringing it back.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, request, TestServer, tempDir, waitFor } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';

const listening = async <T extends http.Server | https.Server | http2.Http2Server>(server: T, where: string | number = 0): Promise<T> => {
  await new Promise<void>((resolve) =>
    typeof where === 'string' ? server.listen(where, resolve) : server.listen(where, '127.0.0.1', resolve),
  );
  return server;
};
const portOf = (server: { address(): unknown }): number => (server.address() as AddressInfo).port;

/** An upstream that answers with what it saw. */
function whoAmI(name: string): http.RequestListener {
  return (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name, url: req.url, host: req.headers.host, xff: req.headers['x-forwarded-for'] }));
  };
}

/** The access log line of the last request with `status`, once written. */
const accessLine = (server: TestServer, status: number, test: (line: Record<string, unknown>) => boolean = () => true) =>
  waitFor(`an access log line with ${status}`, () =>
    server
      .logLines()
      .reverse()
      .find((line) => line.access === true && line.status === status && test(line)),
  );

describe('unix: targets inside the jail', () => {
  const outside = tempDir('miwidothttp-app-');
  chmodSync(outside, 0o755);
  const ownDir = path.join(outside, 'run');
  const sharedSocket = path.join(tmpdir(), `miwidothttp-test-${process.pid}-${Date.now()}.sock`);
  const upstreams: http.Server[] = [];

  async function unixUpstream(socket: string, name: string): Promise<void> {
    const server = await listening(http.createServer(whoAmI(name)), socket);
    // connect(2) needs write permission on the socket: the workers' uid is not the app's.
    chmodSync(socket, 0o666);
    upstreams.push(server);
  }

  before(async () => {
    mkdirSync(ownDir, { mode: 0o755 });
    await unixUpstream(path.join(ownDir, 'app.sock'), 'own-dir');
    await unixUpstream(sharedSocket, 'shared-dir');
  });
  after(async () => {
    for (const server of upstreams) server.close();
    rmSync(outside, { recursive: true, force: true });
    rmSync(sharedSocket, { force: true });
  });

  const vhosts = (inside: string): string => `
[[vhosts]]
domains = ["own.test"]
[vhosts.backend]
type = "proxy"
target = "unix:${path.join(ownDir, 'app.sock')}"

[[vhosts]]
domains = ["shared.test"]
[vhosts.backend]
type = "proxy"
target = "unix:${sharedSocket}"

[[vhosts]]
domains = ["inside.test"]
[vhosts.backend]
type = "proxy"
target = "unix:${inside}"
`;

  for (const jail of ["the operator's chroot", 'the default jail'] as const) {
    it(`a socket in its own directory, one alone in /tmp and one inside the chroot all answer, in ${jail}`, async () => {
      const server = new TestServer();
      const inside = path.join(server.dir, 'inside', 'app.sock');
      mkdirSync(path.dirname(inside), { mode: 0o755 });
      await unixUpstream(inside, 'inside');
      try {
        // Without [process.isolation] chroot, the workers run in the empty jail the master makes, every bind in it.
        await server.start(`${jail === 'the default jail' ? '[process.isolation]\nmax_open_files = 10000\n' : ''}${vhosts(inside)}`);
        for (const [host, name] of [
          ['own.test', 'own-dir'],
          ['shared.test', 'shared-dir'],
          ['inside.test', 'inside'],
        ]) {
          const answer = await request(server.port, { headers: { host: host! } });
          assert.equal(answer.status, 200, `${host}: ${answer.body}`);
          const seen = JSON.parse(answer.body) as { name: string; host: string; xff: string };
          assert.equal(seen.name, name);
          assert.equal(seen.host, host, 'preserve_host passes the client Host to a socket too');
          assert.equal(seen.xff, '127.0.0.1');
        }
      } finally {
        await server.stop();
      }
    });
  }

  it('the app makes its socket anew: a socket in its own directory is reached again without a reload', async () => {
    const server = new TestServer();
    try {
      await server.start(vhosts(path.join(server.dir, 'unused.sock')));
      assert.equal((await request(server.port, { headers: { host: 'own.test' } })).status, 200);
      const old = upstreams.find((upstream) => upstream.address() === path.join(ownDir, 'app.sock'))!;
      await new Promise<void>((resolve) => old.close(() => resolve()));
      rmSync(path.join(ownDir, 'app.sock'), { force: true });
      assert.equal((await request(server.port, { headers: { host: 'own.test' } })).status, 502, 'the app is down');
      await unixUpstream(path.join(ownDir, 'app.sock'), 'own-dir again');
      const answer = await request(server.port, { headers: { host: 'own.test' } });
      assert.equal(answer.status, 200);
      assert.equal((JSON.parse(answer.body) as { name: string }).name, 'own-dir again');
    } finally {
      await server.stop();
    }
  });
});

describe('https:// targets: CA file, server_name, client certificates, verification', () => {
  const server = new TestServer();
  const ca = new TestCa(tempDir('miwidothttp-upstream-ca-'));
  const servers: https.Server[] = [];
  let trusted = 0;
  let mutual = 0;
  let selfSigned = 0;
  let client: { cert: string; key: string };

  before(async () => {
    const api = ca.issue('api', ['api.internal']);
    client = ca.issue('proxy-client', ['proxy.internal'], { clientAuth: true });
    const dir = tempDir('miwidothttp-self-signed-');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
        '-days',
        '2',
        '-subj',
        '/CN=self.internal',
        '-addext',
        'subjectAltName=DNS:self.internal,IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const read = (file: string): string => readFileSync(file, 'utf8');
    const plain = await listening(https.createServer({ cert: read(api.cert), key: read(api.key) }, whoAmI('trusted')));
    const needsClient = await listening(
      https.createServer(
        { cert: read(api.cert), key: read(api.key), ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
        (req, res) => {
          const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
          res.end(`client ${peer.subject?.CN ?? 'none'}\n`);
        },
      ),
    );
    const unknown = await listening(
      https.createServer({ cert: read(path.join(dir, 'cert.pem')), key: read(path.join(dir, 'key.pem')) }, whoAmI('self-signed')),
    );
    servers.push(plain, needsClient, unknown);
    [trusted, mutual, selfSigned] = servers.map(portOf) as [number, number, number];
    const proxy = (domain: string, keys: string): string =>
      `[[vhosts]]\ndomains = ["${domain}"]\n[vhosts.backend]\ntype = "proxy"\n${keys}\n`;
    await server.start(
      [
        proxy('trusted.test', `target = "https://127.0.0.1:${trusted}"\nca_file = "${ca.certFile}"\nserver_name = "api.internal"`),
        proxy('wrong-name.test', `target = "https://127.0.0.1:${trusted}"\nca_file = "${ca.certFile}"`),
        proxy(
          'mtls.test',
          `target = "https://127.0.0.1:${mutual}"\nca_file = "${ca.certFile}"\nserver_name = "api.internal"\nclient_cert_file = "${client.cert}"\nclient_key_file = "${client.key}"`,
        ),
        proxy('no-client-cert.test', `target = "https://127.0.0.1:${mutual}"\nca_file = "${ca.certFile}"\nserver_name = "api.internal"`),
        proxy('self-signed.test', `target = "https://127.0.0.1:${selfSigned}"`),
        proxy('unverified.test', `target = "https://127.0.0.1:${selfSigned}"\nverify = false`),
      ].join('\n'),
      'access_log = true\n',
    );
  });
  after(async () => {
    await server.stop();
    for (const upstream of servers) upstream.close();
  });

  it('a CA file and server_name: verified against the name, not the IP the target names', async () => {
    const answer = await request(server.port, { headers: { host: 'trusted.test' } });
    assert.equal(answer.status, 200, answer.body);
    assert.equal((JSON.parse(answer.body) as { name: string }).name, 'trusted');
  });

  it('a certificate for another name: 502 upstream.tls_failed, the log says the certificate did not verify', async () => {
    const answer = await request(server.port, { headers: { host: 'wrong-name.test' } });
    assert.equal(answer.status, 502);
    const line = await accessLine(server, 502, (entry) => entry.host === 'wrong-name.test');
    assert.equal(line.event, 'upstream.tls_failed');
    assert.match(String(line.detail), /certificate verify failed: ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('a self-signed upstream: 502 with why (not just upstream.unavailable), logged at warn; verify = false accepts it', async () => {
    const answer = await request(server.port, { headers: { host: 'self-signed.test' } });
    assert.equal(answer.status, 502);
    assert.doesNotMatch(answer.body, /SELF_SIGNED|certificate/i, 'the client sees only the generic text');
    const line = await accessLine(server, 502, (entry) => entry.host === 'self-signed.test');
    assert.equal(line.event, 'upstream.tls_failed');
    assert.match(String(line.detail), /certificate verify failed: DEPTH_ZERO_SELF_SIGNED_CERT/);
    await waitFor('the warning', () =>
      server
        .logLines()
        .find((entry) => entry.event === 'upstream.tls_failed' && String(entry.detail).includes('DEPTH_ZERO_SELF_SIGNED_CERT')),
    );
    const accepted = await request(server.port, { headers: { host: 'unverified.test' } });
    assert.equal(accepted.status, 200);
  });

  it('mTLS: the client key (root-only, outside the jail: only the master can read it) reaches the upstream as PEM; without one the handshake fails, 502', async () => {
    const answer = await request(server.port, { headers: { host: 'mtls.test' } });
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.body, 'client proxy.internal\n');
    const refused = await request(server.port, { headers: { host: 'no-client-cert.test' } });
    assert.equal(refused.status, 502);
    const line = await accessLine(server, 502, (entry) => entry.host === 'no-client-cert.test');
    assert.match(String(line.event), /^upstream\.(tls_failed|unavailable)$/);
    assert.match(String(line.detail), /127\.0\.0\.1:\d+ (TLS handshake failed: ERR_SSL_|ECONNRESET|UND_ERR_SOCKET)/);
  });
});

describe('HTTP/2 to the upstream: a gRPC-shaped exchange, trailers passed through', () => {
  const server = new TestServer();
  let upstream: http2.Http2Server;
  let httpsPort = 0;
  let ca: TestCa;
  const seen: http2.IncomingHttpHeaders[] = [];

  /** One gRPC message: compressed flag, 4-byte length, bytes (the gRPC over HTTP/2 wire format). */
  const grpcMessage = (text: string): Buffer => {
    const body = Buffer.from(text);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    return Buffer.concat([head, body]);
  };

  before(async () => {
    upstream = http2.createServer();
    upstream.on('stream', (stream, headers) => {
      seen.push(headers);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const request = Buffer.concat(chunks).subarray(5).toString();
        const fail = headers[':path'] === '/echo.Echo/Fail';
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () =>
          stream.sendTrailers(
            fail ? { 'grpc-status': '5', 'grpc-message': 'no such thing' } : { 'grpc-status': '0', 'grpc-message': 'OK' },
          ),
        );
        stream.end(fail ? undefined : grpcMessage(`echo: ${request}`));
      });
    });
    await listening(upstream);
    ca = new TestCa(server.dir);
    const site = ca.issue('site', ['grpc.test']);
    httpsPort = await freePort();
    await server.start(
      `[ssl.domains."grpc.test"]
cert_file = "${site.cert}"
key_file = "${site.key}"
[[vhosts]]
domains = ["grpc.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${portOf(upstream)}"
protocol = "h2"
`,
      `https_port = ${httpsPort}\n`,
    );
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  async function call(
    method: string,
    text: string,
  ): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
    const session = http2.connect(`https://127.0.0.1:${httpsPort}`, { ca: ca.certPem, servername: 'grpc.test' });
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': `/echo.Echo/${method}`,
        ':authority': 'grpc.test',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.end(grpcMessage(text));
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return { headers, body: Buffer.concat(chunks), trailers: await trailers };
    } finally {
      session.close();
    }
  }

  it('a unary call: the upstream is spoken to over HTTP/2 with TE: trailers, and grpc-status comes back as a trailer', async () => {
    const answer = await call('Say', 'hello');
    assert.equal(answer.headers[':status'], 200);
    assert.equal(answer.headers['content-type'], 'application/grpc');
    assert.equal(answer.body.subarray(5).toString(), 'echo: hello');
    assert.equal(answer.trailers['grpc-status'], '0');
    assert.equal(answer.trailers['grpc-message'], 'OK');
    const upstreamSaw = seen.at(-1)!;
    assert.equal(upstreamSaw[':method'], 'POST');
    assert.equal(upstreamSaw.te, 'trailers');
    assert.equal(upstreamSaw['x-forwarded-for'], '127.0.0.1');
  });

  it('an error status travels as a trailer too', async () => {
    const answer = await call('Fail', 'x');
    assert.equal(answer.trailers['grpc-status'], '5');
    assert.equal(answer.trailers['grpc-message'], 'no such thing');
  });
});

describe('active health checks', () => {
  const server = new TestServer();
  const health = { a: true, b: true };
  const probes = { a: 0, b: 0 };
  const probeAgents = new Set<string>();
  const served = { a: 0, b: 0 };
  const upstreams: http.Server[] = [];
  const ports: number[] = [];

  before(async () => {
    for (const name of ['a', 'b'] as const) {
      const upstream = await listening(
        http.createServer((req, res) => {
          if (req.url === '/healthz') {
            probes[name]++;
            probeAgents.add(String(req.headers['user-agent']));
            res.statusCode = health[name] ? 200 : 503;
            res.end();
            return;
          }
          served[name]++;
          res.end(name);
        }),
      );
      upstreams.push(upstream);
      ports.push(portOf(upstream));
    }
    await server.start(
      `[[vhosts]]
domains = ["*"]
[vhosts.backend]
type = "proxy"
targets = [{ url = "http://127.0.0.1:${ports[0]}" }, { url = "http://127.0.0.1:${ports[1]}" }]
health_check = { path = "/healthz", interval = 1, timeout = 1, fails = 2, passes = 2 }
`,
      'workers = 1\n',
    );
  });
  after(async () => {
    await server.stop();
    for (const upstream of upstreams) upstream.close();
  });

  const spread = async (count: number): Promise<{ a: number; b: number }> => {
    const before = { ...served };
    for (let i = 0; i < count; i++) assert.equal((await request(server.port)).status, 200);
    return { a: served.a - before.a, b: served.b - before.b };
  };

  it('both healthy: both serve, and each is probed', async () => {
    await waitFor('probes of both', () => probes.a > 0 && probes.b > 0);
    const counts = await spread(10);
    assert.ok(counts.a > 0 && counts.b > 0, JSON.stringify(counts));
  });

  it('a target failing its checks is taken out after `fails` failures, and comes back after `passes` passes', async () => {
    health.a = false;
    const labelA = `http://127.0.0.1:${ports[0]}`;
    await waitFor('a marked unhealthy', () =>
      server.logLines().find((line) => line.event === 'upstream.unhealthy' && line.target === labelA),
    );
    assert.deepEqual(await spread(10), { a: 0, b: 10 });
    health.a = true;
    await waitFor('a healthy again', () => server.logLines().find((line) => line.event === 'upstream.healthy' && line.target === labelA));
    const counts = await spread(10);
    assert.ok(counts.a > 0, JSON.stringify(counts));
  });

  it('the probes carry their own user agent and never count as client requests', async () => {
    const before = served.a;
    await waitFor('more probes', () => probes.a > 3);
    assert.equal(served.a, before);
    assert.deepEqual([...probeAgents], ['miwidothttp-health-check']);
  });
});
