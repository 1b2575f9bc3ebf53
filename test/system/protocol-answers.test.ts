/**
 * Issue 14, wrong answers: the answers RFC 9112 and RFC 9110 call for, on
 * the real server. Pipelined requests are answered with rate limiting on
 * (HTTP and TLS); none is processed after the one max_request_per_connection
 * closes the connection with (RFC 9112 §9.6); enforce_https answers a Host no
 * vhost claims 421, never a redirect to it; an absolute-form target's
 * authority wins over Host (RFC 9112 §3.2.2) and userinfo is refused; the
 * proxy owns every address header it sends upstream; CF-Connecting-IP is
 * believed only from Cloudflare when trusted_proxies names it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { freePort, listenLocal, TestServer, waitFor, exchange } from '../support/harness.js';
import { siteCertificate } from '../support/test-ca.js';

function exchangeTls(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      // A fresh client address: its first request waits for the master's token lease.
      socket: net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.23' }),
      servername: 'site.test',
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    let text = '';
    const timer = setTimeout(() => socket.destroy(), 8000);
    socket.on('secureConnect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

/** The status codes of every response in a raw answer, in order. */
const statuses = (answer: string): number[] => [...answer.matchAll(/(?:^|\n)HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));

/** The headers the echo upstream saw, from a raw answer. */
function seenUpstream(answer: string): http.IncomingHttpHeaders {
  return JSON.parse(answer.slice(answer.indexOf('{'), answer.lastIndexOf('}') + 1)) as http.IncomingHttpHeaders;
}

const get = (host: string, target = '/', extra = '') => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

describe('issue 14: answers per RFC 9112 and 9110', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => res.end(JSON.stringify(req.headers)));
  let httpsPort = 0;

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'site\n');
    const tlsSite = siteCertificate(server.dir);
    httpsPort = await freePort();
    const upstreamPort = await listenLocal(upstream);
    await server.start(
      `${tlsSite}
[security.rate_limiting]
enabled = true
requests_per_second = 1000
burst_size = 2000

[security.anti_smuggling]
max_request_per_connection = 3

[security.proxy_protocol]
enabled = true
trusted_proxies = ["127.0.0.1/32"]

[security.forwarded]
trust_proxy = true
trusted_proxies = ["127.0.0.1/32", "cloudflare"]

[[vhosts]]
domains = ["site.test"]
root = "${server.dir}"

[[vhosts]]
domains = ["app.test"]
[vhosts.backend]
type = "proxy"
target = "http://127.0.0.1:${upstreamPort}"`,
      `https_port = ${httpsPort}\n`,
    );
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it('answers both of two pipelined requests with rate limiting on, over HTTP', async () => {
    // A fresh client address: its first request waits for the master's token lease.
    const answer = await exchange(server.port, get('site.test') + get('site.test', '/', 'Connection: close\r\n'), '127.0.0.21');
    assert.deepEqual(statuses(answer), [200, 200], answer.slice(0, 300));
  });

  it('answers both of two pipelined requests with rate limiting on, over TLS', async () => {
    const answer = await exchangeTls(httpsPort, get('site.test') + get('site.test', '/', 'Connection: close\r\n'));
    assert.deepEqual(statuses(answer), [200, 200], answer.slice(0, 300));
  });

  it('processes no pipelined request after max_request_per_connection: the connection closes (RFC 9112 §9.6)', async () => {
    const answer = await exchange(server.port, get('site.test').repeat(5), '127.0.0.22');
    assert.deepEqual(statuses(answer), [200, 200, 200], 'three answers, then the connection closed; no 503');
    const last = answer.slice(answer.lastIndexOf('HTTP/1.1 '));
    assert.match(last, /\r\nConnection: close\r\n/i);
  });

  it("routes an absolute-form request by its target's authority, not Host (RFC 9112 §3.2.2)", async () => {
    const answer = await exchange(server.port, get('app.test', 'http://site.test/', 'Connection: close\r\n'));
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /\r\n\r\nsite\n$/);
    const proxied = await exchange(server.port, get('evil.test', 'http://app.test/x?y=1', 'Connection: close\r\n'));
    const seen = seenUpstream(proxied);
    assert.equal(seen.host, 'app.test');
    assert.equal(seen['x-forwarded-host'], 'app.test');
  });

  it('refuses userinfo in Host or in the request-target authority', async () => {
    for (const bytes of [
      get('proxy.test@evil', '/', 'Connection: close\r\n'),
      get('app.test', 'http://app.test@evil.test/', 'Connection: close\r\n'),
      get('app.test', 'http://user:pw@app.test/', 'Connection: close\r\n'),
    ]) {
      const answer = await exchange(server.port, bytes);
      assert.match(answer, /^HTTP\/1\.1 400 /, bytes);
    }
    await waitFor('audit request.bad_host', () => server.logLines().some((line) => line.audit === 'request.bad_host'));
  });

  it('sends upstream the peer in X-Forwarded-For, and no client-chosen address header', async () => {
    const forged = [
      'X-Forwarded-For: 6.6.6.6',
      'X-Real-IP: 6.6.6.6',
      'Forwarded: for=6.6.6.6',
      'CF-Connecting-IP: 6.6.6.6',
      'X-Client-IP: 6.6.6.6',
      'True-Client-IP: 6.6.6.6',
      'X-Forwarded-Port: 1',
      'X-Original-URL: /admin',
      'X-Forwarded-Host: evil.test',
      'X-Forwarded-Proto: https',
      'Connection: close',
    ].join('\r\n');
    // 127.0.0.5 is not a trusted proxy: everything it claims is dropped.
    const seen = seenUpstream(await exchange(server.port, get('app.test', '/', `${forged}\r\n`), '127.0.0.5'));
    assert.equal(seen['x-real-ip'], '127.0.0.5');
    assert.equal(seen['x-forwarded-for'], '127.0.0.5');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'app.test');
    for (const name of ['forwarded', 'cf-connecting-ip', 'x-client-ip', 'true-client-ip', 'x-forwarded-port', 'x-original-url'])
      assert.equal(seen[name], undefined, `${name} passed upstream`);
  });

  it("keeps a trusted proxy's X-Forwarded-For hops and appends that proxy, not the client again", async () => {
    const seen = seenUpstream(await exchange(server.port, get('app.test', '/', 'X-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n')));
    assert.equal(seen['x-real-ip'], '1.2.3.4');
    assert.equal(seen['x-forwarded-for'], '1.2.3.4, 127.0.0.1');
  });

  it('believes CF-Connecting-IP from Cloudflare\'s addresses only when trusted_proxies names "cloudflare"', async () => {
    const request = get('app.test', '/', 'CF-Connecting-IP: 198.51.100.77\r\nConnection: close\r\n');
    // From a trusted proxy that is not Cloudflare: ignored.
    const local = seenUpstream(await exchange(server.port, request));
    assert.equal(local['x-real-ip'], '127.0.0.1');
    // From a Cloudflare address (the PROXY protocol source 173.245.48.5): the client.
    const viaCloudflare = seenUpstream(await exchange(server.port, `PROXY TCP4 173.245.48.5 127.0.0.1 40000 80\r\n${request}`));
    assert.equal(viaCloudflare['x-real-ip'], '198.51.100.77');
    assert.equal(viaCloudflare['x-forwarded-for'], '173.245.48.5');
    assert.equal(viaCloudflare['cf-connecting-ip'], undefined);
  });
});

describe('issue 14: enforce_https and a Host no vhost claims', () => {
  const server = new TestServer();
  let httpsPort = 0;

  before(async () => {
    const tlsSite = siteCertificate(server.dir);
    httpsPort = await freePort();
    await server.start(
      `${tlsSite}
[security]
enforce_https = true

[[vhosts]]
domains = ["site.test"]
root = "${server.dir}"`,
      `https_port = ${httpsPort}\nworkers = 1\n`,
    );
  });
  after(() => server.stop());

  it('answers 421, not a redirect to the unknown host', async () => {
    const answer = await exchange(server.port, get('evil.com', '/x', 'Connection: close\r\n'));
    assert.match(answer, /^HTTP\/1\.1 421 /);
    assert.doesNotMatch(answer, /\r\nLocation:/i);
  });

  it('still redirects a Host a vhost claims', async () => {
    const answer = await exchange(server.port, get('site.test', '/x', 'Connection: close\r\n'));
    assert.match(answer, /^HTTP\/1\.1 301 /);
    assert.match(answer, new RegExp(`\\r\\nLocation: https://site\\.test:${httpsPort}/x\\r\\n`, 'i'));
  });
});
