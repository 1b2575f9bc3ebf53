/**
 * Serving through the real server: vhost selection, static files with
 * traversal and dotfile attempts, redirects, reverse-proxy header hygiene,
 * parse errors, security headers on every answer.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, rawRequest, request, TestServer, waitFor } from '../support/harness.js';

/** An upstream that answers with the headers it received, plus hop-by-hop headers of its own. */
function echoUpstream(): Promise<{ server: http.Server; port: number; seen: http.IncomingHttpHeaders[] }> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, {
        'Content-Type': 'application/json',
        Connection: 'keep-alive, X-Upstream-Secret',
        'X-Upstream-Secret': 'internal',
        'Keep-Alive': 'timeout=5',
        'Proxy-Authenticate': 'Basic',
        'X-Upstream-Path': req.url ?? '',
        'X-Powered-By': 'Express',
      });
      res.end(JSON.stringify(req.headers));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, seen })),
  );
}

describe('serving', () => {
  const server = new TestServer();
  let upstream: Awaited<ReturnType<typeof echoUpstream>>;
  let deadPort: number;

  before(async () => {
    const www = path.join(server.dir, 'www');
    const other = path.join(server.dir, 'other');
    mkdirSync(path.join(www, 'sub'), { recursive: true });
    mkdirSync(other);
    writeFileSync(path.join(www, 'index.html'), '<h1>main</h1>\n');
    writeFileSync(path.join(www, 'style.css'), 'body{}\n');
    writeFileSync(path.join(www, '.env'), 'SECRET=1\n');
    writeFileSync(path.join(www, 'sub', 'index.html'), 'sub\n');
    writeFileSync(path.join(other, 'index.html'), 'other site\n');
    writeFileSync(path.join(server.dir, 'secret.txt'), 'TOP SECRET\n');
    upstream = await echoUpstream();
    deadPort = await freePort();
    await server.start(
      `[[vhosts]]
domains = ["example.test", "*.example.test"]
root = "${www}"

[[vhosts]]
domains = ["other.test"]
root = "${other}"

[[vhosts]]
domains = ["app.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstream.port}/api"
preserve_host = true

[[vhosts]]
domains = ["down.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${deadPort}"

[[vhosts]]
domains = ["old.test"]
[vhosts.backend]
type = "redirect"
target = "https://example.test"
status = 308

[security.headers.custom]
"X-Powered-By" = ""
"X-Served-By" = "miwidothttp"
`,
      'access_log = true',
    );
  });
  after(async () => {
    await server.stop();
    upstream.server.close();
  });

  const get = (host: string, urlPath = '/', headers: http.OutgoingHttpHeaders = {}) =>
    request(server.port, { path: urlPath, headers: { Host: host, ...headers } });

  describe('virtual hosts', () => {
    it('selects by exact name, by wildcard, and ignores the port in Host', async () => {
      assert.equal((await get('example.test')).body, '<h1>main</h1>\n');
      assert.equal((await get('deep.sub.example.test')).body, '<h1>main</h1>\n');
      assert.equal((await get('OTHER.test:8080')).body, 'other site\n');
    });

    it('answers 421 for a Host no vhost claims (there is no "*" here)', async () => {
      assert.equal((await get('unknown.test')).status, 421);
    });

    it('redirects, keeping path and query', async () => {
      const response = await get('old.test', '/a/b?c=d');
      assert.equal(response.status, 308);
      assert.equal(response.headers.location, 'https://example.test/a/b?c=d');
    });
  });

  describe('security headers', () => {
    for (const [name, host, urlPath] of [
      ['a file', 'example.test', '/'],
      ['a 404', 'example.test', '/missing'],
      ['a 421', 'nobody.test', '/'],
      ['a proxied answer', 'app.test', '/'],
    ] as const) {
      it(`are on ${name}`, async () => {
        const response = await get(host, urlPath);
        assert.equal(response.headers['x-content-type-options'], 'nosniff');
        assert.equal(response.headers['x-frame-options'], 'DENY');
        assert.equal(response.headers['strict-transport-security'], undefined, 'HSTS only over HTTPS (RFC 6797 §7.2)');
        assert.ok(response.headers['content-security-policy']);
        assert.equal(response.headers['x-served-by'], 'miwidothttp');
        assert.equal(response.headers['x-powered-by'], undefined, 'a header configured as "" is removed');
      });
    }
  });

  describe('static files', () => {
    it('serves with MIME type, ETag and 304 revalidation', async () => {
      const first = await get('example.test', '/style.css');
      assert.equal(first.status, 200);
      assert.match(String(first.headers['content-type']), /^text\/css/);
      const again = await get('example.test', '/style.css', { 'If-None-Match': String(first.headers.etag) });
      assert.equal(again.status, 304);
    });

    // Raw bytes, so no client library normalises the path first.
    const attempts = [
      '/../secret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E%2Fsecret.txt',
      '/..%2fsecret.txt',
      '/%252e%252e/secret.txt',
      '/..\\secret.txt',
      '/%5c..%5csecret.txt',
      '/sub/../../secret.txt',
      '/%c0%ae%c0%ae/secret.txt',
      '/index.html%00.css',
      '/.env',
      '/%2eenv',
      '/sub/%2e%2e/.env',
    ];
    for (const target of attempts) {
      it(`refuses ${target}`, async () => {
        const answer = await rawRequest(server.port, `GET ${target} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`);
        const status = Number(answer.slice(9, 12));
        assert.ok([400, 403, 404].includes(status), `status ${status} for ${target}`);
        assert.ok(!answer.includes('TOP SECRET') && !answer.includes('SECRET=1'), `leaked a file for ${target}`);
      });
    }
  });

  describe('reverse proxy', () => {
    it('sets X-Real-IP and X-Forwarded-* and strips hop-by-hop headers both ways', async () => {
      const response = await get('app.test', '/x?q=1', {
        'X-Real-IP': '6.6.6.6',
        'X-Forwarded-For': '203.0.113.7',
        'X-Forwarded-Proto': 'https',
        Connection: 'keep-alive, X-Drop-Me',
        'X-Drop-Me': 'client-internal',
        'Keep-Alive': 'timeout=100',
        'Proxy-Authorization': 'Basic c2VjcmV0',
        TE: 'trailers, deflate',
      });
      assert.equal(response.status, 200);
      const seen = JSON.parse(response.body) as http.IncomingHttpHeaders;
      assert.equal(seen['x-real-ip'], '127.0.0.1', "X-Real-IP is the client address, never the client's claim");
      // The client is no trusted proxy: its own X-Forwarded-For is dropped, not appended to.
      assert.equal(seen['x-forwarded-for'], '127.0.0.1');
      assert.equal(seen['x-forwarded-proto'], 'http');
      assert.equal(seen['x-forwarded-host'], 'app.test');
      assert.equal(seen.host, 'app.test');
      for (const name of ['x-drop-me', 'keep-alive', 'proxy-authorization'])
        assert.equal(seen[name], undefined, `${name} reached the upstream`);
      // TE is this hop's: only "trailers" is said again, since the proxy relays trailer fields (as Caddy and Go's ReverseProxy do).
      assert.equal(seen.te, 'trailers');
      assert.equal(response.headers['x-upstream-path'], '/api/x?q=1');
      for (const name of ['x-upstream-secret', 'proxy-authenticate'])
        assert.equal(response.headers[name], undefined, `${name} reached the client`);
    });

    it('never passes an h2c upgrade to the upstream (Upgrade, HTTP2-Settings)', async () => {
      const answer = await rawRequest(
        server.port,
        'GET /h2c HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
      );
      assert.match(answer, /^HTTP\/1\.1 200 /);
      // The echoed headers, whatever the transfer coding of the answer.
      const seen = JSON.parse(answer.slice(answer.indexOf('{'), answer.lastIndexOf('}') + 1)) as http.IncomingHttpHeaders;
      assert.equal(seen.upgrade, undefined);
      assert.equal(seen['http2-settings'], undefined);
      assert.doesNotMatch(String(seen.connection ?? ''), /upgrade/i);
    });

    it('answers 502 when the upstream is down', async () => {
      assert.equal((await get('down.test')).status, 502);
    });
  });

  describe('malformed requests', () => {
    it('answers a parse error with 400, the security headers, and closes', async () => {
      const answer = await rawRequest(server.port, 'GET / HTTP/1.1\r\nHost: example.test\r\nBad Header\r\n\r\n');
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.match(answer, /\r\nConnection: close\r\n/);
      assert.match(answer, /\r\nX-Content-Type-Options: nosniff\r\n/);
    });

    it('answers an oversized head with 431', async () => {
      const answer = await rawRequest(server.port, `GET / HTTP/1.1\r\nHost: example.test\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 431 /);
    });

    it('keeps serving afterwards', async () => {
      assert.equal((await get('example.test')).status, 200);
    });

    it('logs parse errors without the raw request', async () => {
      await rawRequest(server.port, 'GET / HTTP/1.1\r\nHost: example.test\r\nAuthorization: Bearer hunter2\r\nBad Header\r\n\r\n');
      const line = await waitFor('audit event', () => server.logLines().find((entry) => entry.audit === 'request.malformed'));
      assert.equal(line.status, 400);
      assert.ok(!server.output.includes('hunter2'), 'a credential reached the log');
    });
  });

  it('writes an access log line per request, without the query string', async () => {
    await get('example.test', '/style.css?token=abc');
    const line = await waitFor('access log', () => server.logLines().find((entry) => entry.access === true && entry.path === '/style.css'));
    assert.equal(line.status, 200);
    assert.ok(!server.output.includes('token=abc'));
  });
});
