/**
 * [security.headers] on every response (issue 5, item 3): each header
 * present, changed or removed as configured, on a 200, a 404, a 4xx from a
 * pipeline stage and a parse error answered raw; a vhost's own
 * [vhosts.headers] over the server's; HSTS never over plain HTTP.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listenLocal, proxyVhost, rawRequest, request, TestServer } from '../support/harness.js';

/** Lower-case name -> value of a raw answer's head. */
function headersOf(answer: string): Map<string, string> {
  const head = answer.slice(0, answer.indexOf('\r\n\r\n'));
  return new Map(
    head
      .split('\r\n')
      .slice(1)
      .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
}

describe('security headers', () => {
  const server = new TestServer();
  const upstream = http.createServer((_req, res) => {
    res.setHeader('X-Powered-By', 'Express');
    res.setHeader('X-Frame-Options', 'ALLOW-FROM https://upstream.example');
    res.end('from upstream\n');
  });

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    const upstreamPort = await listenLocal(upstream);
    await server.start(`[security.limits]
max_headers = 20

[security.headers]
frame_options = "SAMEORIGIN"
referrer_policy = "no-referrer"
permissions_policy = "camera=()"
csp_report_only = true
csp_directives = "default-src 'self'"
xss_protection = ""

[security.headers.custom]
X-Served-By = "miwidothttp"
X-Powered-By = ""

[[vhosts]]
domains = ["plain.test"]
root = "${server.dir}"

[[vhosts]]
domains = ["own.test"]
root = "${server.dir}"

[vhosts.headers]
frame_options = "DENY"
csp_report_only = false
csp_directives = "default-src 'none'"

[vhosts.headers.custom]
X-Served-By = ""
X-Site = "own"

${proxyVhost('app.test', upstreamPort)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  const expectServerHeaders = (headers: Map<string, string>, what: string): void => {
    assert.equal(headers.get('x-frame-options'), 'SAMEORIGIN', what);
    assert.equal(headers.get('x-content-type-options'), 'nosniff', what);
    assert.equal(headers.get('referrer-policy'), 'no-referrer', what);
    assert.equal(headers.get('permissions-policy'), 'camera=()', what);
    assert.equal(headers.get('content-security-policy-report-only'), "default-src 'self'", `${what}: report-only mode`);
    assert.equal(headers.get('content-security-policy'), undefined, `${what}: not enforcing`);
    assert.equal(headers.get('x-xss-protection'), undefined, `${what}: set to "" is not sent`);
    assert.equal(headers.get('x-served-by'), 'miwidothttp', `${what}: custom header`);
    assert.equal(headers.get('x-powered-by'), undefined, `${what}: custom "" removes`);
    assert.equal(headers.get('strict-transport-security'), undefined, `${what}: HSTS only over HTTPS`);
  };

  const cases = [
    ['a 200', `GET / HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n`, 200],
    ['a 404', `GET /missing HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n`, 404],
    ['a 421 from the route stage', `GET / HTTP/1.1\r\nHost: nobody.test\r\nConnection: close\r\n\r\n`, 421],
    ['a 431 from the header-limits stage', `GET / HTTP/1.1\r\nHost: plain.test\r\n${'X-H: v\r\n'.repeat(25)}\r\n`, 431],
    ['a 400 from the parser (answered raw)', `GET / HTTP/1.1\r\nHost: plain.test\r\nBad Header: x\r\n\r\n`, 400],
  ] as const;
  for (const [what, bytes, status] of cases) {
    it(`are on ${what}`, async () => {
      const answer = await rawRequest(server.port, bytes);
      assert.equal(Number(answer.slice(9, 12)), status, answer.slice(0, 100));
      expectServerHeaders(headersOf(answer), what);
    });
  }

  it("replace an upstream's own frame options and remove its X-Powered-By", async () => {
    const response = await request(server.port, { path: '/', headers: { Host: 'app.test' } });
    assert.equal(response.body, 'from upstream\n');
    assert.equal(response.headers['x-powered-by'], undefined);
    // The upstream's own value wins: it knows its pages; the server fills in what it left out.
    assert.equal(response.headers['x-frame-options'], 'ALLOW-FROM https://upstream.example');
    assert.equal(response.headers['x-served-by'], 'miwidothttp');
  });

  for (const [what, urlPath, status] of [
    ['a 200', '/', 200],
    ['a 404', '/missing', 404],
  ] as const) {
    it(`a vhost's own headers override the server's on ${what}`, async () => {
      const response = await request(server.port, { path: urlPath, headers: { Host: 'own.test' } });
      assert.equal(response.status, status);
      assert.equal(response.headers['x-frame-options'], 'DENY');
      assert.equal(response.headers['content-security-policy'], "default-src 'none'");
      assert.equal(response.headers['content-security-policy-report-only'], undefined);
      assert.equal(response.headers['x-site'], 'own');
      assert.equal(response.headers['x-served-by'], undefined, 'removed for this vhost only');
      assert.equal(response.headers['referrer-policy'], 'no-referrer', "the server's value where the vhost sets none");
      assert.equal(response.headers['x-powered-by'], undefined);
    });
  }
});
