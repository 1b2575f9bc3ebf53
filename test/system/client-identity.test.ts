/**
 * PROXY protocol and client-IP resolution through the real server: who the
 * client is decides X-Real-IP upstream; untrusted senders cannot claim to
 * be someone else. 127.0.0.5 plays "another IP".
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { listenLocal, proxyVhost, TestServer, waitFor, exchange } from '../support/harness.js';

function v2Tcp4(source: string, sourcePort: number): Buffer {
  const header = Buffer.alloc(16 + 12);
  Buffer.from('0d0a0d0a000d0a515549540a', 'hex').copy(header, 0);
  header[12] = 0x21; // version 2, PROXY
  header[13] = 0x11; // AF_INET, STREAM
  header.writeUInt16BE(12, 14);
  for (const [i, octet] of source.split('.').entries()) header[16 + i] = Number(octet);
  for (const [i, octet] of [127, 0, 0, 1].entries()) header[20 + i] = octet;
  header.writeUInt16BE(sourcePort, 24);
  header.writeUInt16BE(80, 26);
  return header;
}

const GET = 'GET /who HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n';

describe('client identity', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => {
    res.end(`client ${req.headers['x-real-ip']}\n`);
  });

  before(async () => {
    const port = await listenLocal(upstream);
    await server.start(`[security.proxy_protocol]
enabled = true
trusted_proxies = ["127.0.0.1/32"]

[security.forwarded]
trust_proxy = true
trusted_proxies = ["127.0.0.1/32"]

${proxyVhost('app.test', port)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it("a trusted proxy's v1 header names the client", async () => {
    const answer = await exchange(server.port, `PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n${GET}\r\n`);
    assert.match(answer, /^HTTP\/1\.1 200 .*client 203\.0\.113\.9\n$/s);
  });

  it("a trusted proxy's v2 header names the client, split across writes", async () => {
    const bytes = Buffer.concat([v2Tcp4('198.51.100.23', 40000), Buffer.from(`${GET}\r\n`)]);
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1');
      let text = '';
      socket.on('connect', () => {
        socket.write(bytes.subarray(0, 7));
        setTimeout(() => socket.write(bytes.subarray(7, 20)), 50);
        setTimeout(() => socket.write(bytes.subarray(20)), 100);
      });
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve(text));
    });
    assert.match(answer, /client 198\.51\.100\.23\n$/);
  });

  it('an untrusted peer that sends a PROXY header is closed without an answer', async () => {
    const answer = await exchange(server.port, `PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n${GET}\r\n`, '127.0.0.5');
    assert.equal(answer, '');
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'proxy_protocol.untrusted'));
  });

  it('an untrusted peer without a header is served as itself', async () => {
    const answer = await exchange(server.port, `${GET}\r\n`, '127.0.0.5');
    assert.match(answer, /client 127\.0\.0\.5\n$/);
  });

  it('forwarding headers from an untrusted peer are ignored', async () => {
    const answer = await exchange(
      server.port,
      `${GET}X-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.2\r\nForwarded: for=192.0.2.3\r\n\r\n`,
      '127.0.0.5',
    );
    assert.match(answer, /client 127\.0\.0\.5\n$/);
  });

  it('forwarding headers from a trusted peer are believed', async () => {
    const answer = await exchange(server.port, `${GET}X-Forwarded-For: 192.0.2.77\r\n\r\n`);
    assert.match(answer, /client 192\.0\.2\.77\n$/);
  });

  it('a malformed header from a trusted proxy is refused and the worker keeps serving', async () => {
    const answer = await exchange(server.port, `PROXY TCP4 192.168.01.1 127.0.0.1 5555 80\r\n${GET}\r\n`);
    assert.equal(answer, '');
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'proxy_protocol.malformed'));
    assert.match(await exchange(server.port, `${GET}\r\n`), /^HTTP\/1\.1 200 /);
  });
});

describe('PROXY protocol required', () => {
  const server = new TestServer();
  before(() =>
    server.start(`[security.proxy_protocol]
enabled = true
required = true
trusted_proxies = ["127.0.0.1/32"]

[[vhosts]]
domains = ["*"]
root = "${server.dir}"
`),
  );
  after(() => server.stop());

  it('closes a trusted connection that does not start with a header', async () => {
    assert.equal(await exchange(server.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'), '');
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'proxy_protocol.missing'));
  });

  it('closes an untrusted connection before reading it', async () => {
    assert.equal(await exchange(server.port, 'PROXY TCP4 1.2.3.4 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n', '127.0.0.5'), '');
  });

  it('serves a connection with a header', async () => {
    assert.match(
      await exchange(server.port, 'PROXY TCP4 1.2.3.4 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      /^HTTP\/1\.1 (200|404) /,
    );
  });
});
