/**
 * Request hardening (issue 4) against a real, sandboxed server: a table of
 * raw requests and the status each must get, whether the connection must
 * close, the audit event written, and that the worker keeps serving.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenLocal, proxyVhost, rawRequest, request, TestServer, waitFor } from '../support/harness.js';

interface Case {
  name: string;
  bytes: string;
  status: number;
  /** The audit event the rejection writes (null: the parser answers, logged as a client error). */
  event: string;
}

const H = 'Host: hard.test\r\n';
/** The proxied vhost: its upstream reads bodies, so body limits are met mid-stream. */
const B = 'Host: body.test\r\n';
const cases: Case[] = [
  { name: 'duplicate Host', bytes: `GET / HTTP/1.1\r\n${H}${H}\r\n`, status: 400, event: 'request.duplicate_host' },
  { name: 'missing Host on HTTP/1.1', bytes: 'GET / HTTP/1.1\r\n\r\n', status: 400, event: 'request.missing_host' },
  { name: 'HTTP/2.0 in text form', bytes: `GET / HTTP/2.0\r\n${H}\r\n`, status: 505, event: 'request.version_not_supported' },
  { name: 'HTTP/1.2', bytes: `GET / HTTP/1.2\r\n${H}\r\n`, status: 505, event: 'request.version_not_supported' },
  { name: 'URL over max_url_length', bytes: `GET /${'a'.repeat(300)} HTTP/1.1\r\n${H}\r\n`, status: 414, event: 'request.url_too_long' },
  {
    name: 'request line over max_header_size',
    bytes: `GET /${'a'.repeat(9000)} HTTP/1.1\r\n${H}\r\n`,
    status: 414,
    event: 'request.url_too_long',
  },
  {
    name: 'head over max_header_size',
    bytes: `GET / HTTP/1.1\r\n${H}${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(250)}\r\n`,
    status: 431,
    event: 'request.headers_too_large',
  },
  {
    name: 'more headers than max_headers',
    bytes: `GET / HTTP/1.1\r\n${H}${Array.from({ length: 20 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`,
    status: 431,
    event: 'request.too_many_headers',
  },
  {
    name: 'header name over max_header_name_len',
    bytes: `GET / HTTP/1.1\r\n${H}X-${'n'.repeat(300)}: v\r\n\r\n`,
    status: 431,
    event: 'request.header_name_too_long',
  },
  {
    name: 'header value over max_header_value_len',
    bytes: `GET / HTTP/1.1\r\n${H}X-Long: ${'v'.repeat(5000)}\r\n\r\n`,
    status: 431,
    event: 'request.header_value_too_long',
  },
  { name: 'control character in a value', bytes: `GET / HTTP/1.1\r\n${H}X-Ctl: a\x01b\r\n\r\n`, status: 400, event: 'request.malformed' },
  {
    name: 'CL.TE: Content-Length and Transfer-Encoding',
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG`,
    status: 400,
    event: 'request.malformed',
  },
  {
    name: 'TE.CL: Transfer-Encoding first',
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: 400,
    event: 'request.malformed',
  },
  {
    name: 'TE.TE: obfuscated Transfer-Encoding',
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n`,
    status: 400,
    event: 'request.malformed',
  },
  {
    name: 'TE.TE: Transfer-Encoding with a space before the colon',
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    event: 'request.malformed',
  },
  {
    name: 'Transfer-Encoding other than chunked',
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    status: 501,
    event: 'request.transfer_encoding_not_supported',
  },
  {
    name: 'Transfer-Encoding on HTTP/1.0',
    bytes: `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
    event: 'request.ambiguous_framing',
  },
  {
    name: 'two Content-Length values',
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
    status: 400,
    event: 'request.malformed',
  },
  {
    name: 'Content-Length with a sign',
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`,
    status: 400,
    event: 'request.malformed',
  },
  { name: 'Content-Length list', bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, status: 400, event: 'request.malformed' },
  { name: 'obs-fold', bytes: `GET / HTTP/1.1\r\n${H}X-Fold: a\r\n b\r\n\r\n`, status: 400, event: 'request.malformed' },
  { name: 'bare CR in a header', bytes: `GET / HTTP/1.1\r\n${H}X-Cr: a\rb\r\n\r\n`, status: 400, event: 'request.malformed' },
  {
    name: 'declared body over max_body_size',
    bytes: `POST / HTTP/1.1\r\n${B}Content-Length: 5000\r\n\r\n`,
    status: 413,
    event: 'request.body_too_large',
  },
  {
    name: 'JSON nested deeper than max_json_depth',
    bytes: `POST / HTTP/1.1\r\n${B}Content-Type: application/json\r\nContent-Length: 20\r\n\r\n[[[[[[[[[[]]]]]]]]]]`,
    status: 400,
    event: 'request.json_too_deep',
  },
  {
    name: 'more urlencoded fields than max_form_fields',
    bytes: `POST / HTTP/1.1\r\n${B}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 47\r\n\r\na=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=0&k=1&l=2`,
    status: 413,
    event: 'request.too_many_form_fields',
  },
  {
    name: 'multipart without a boundary',
    bytes: `POST / HTTP/1.1\r\n${B}Content-Type: multipart/form-data\r\nContent-Length: 4\r\n\r\nabcd`,
    status: 400,
    event: 'request.bad_multipart',
  },
  {
    name: 'multipart over max_multipart_size',
    bytes: `POST / HTTP/1.1\r\n${B}Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 6000\r\n\r\n`,
    status: 413,
    event: 'request.body_too_large',
  },
  {
    name: 'chunked body over max_body_size',
    bytes: `POST / HTTP/1.1\r\n${B}Transfer-Encoding: chunked\r\n\r\n${`400\r\n${'x'.repeat(1024)}\r\n`}${`400\r\n${'x'.repeat(1024)}\r\n`}0\r\n\r\n`,
    status: 413,
    event: 'request.body_too_large',
  },
  {
    name: 'chunk over max_chunk_size',
    bytes: `POST / HTTP/1.1\r\n${B}Transfer-Encoding: chunked\r\n\r\n640\r\n${'c'.repeat(1600)}\r\n0\r\n\r\n`,
    status: 413,
    event: 'request.chunk_too_large',
  },
];

/**
 * Writes each piece as its own TCP segment (`pauseMs` after each) until the
 * server answers or closes, then collects the answer: until a whole answer
 * arrives or the connection closes, or with `untilClosed` until it closes.
 */
async function sendInPieces(port: number, pieces: readonly string[], { pauseMs = 150, untilClosed = false } = {}): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  let answer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  for (const piece of pieces) {
    if (socket.destroyed || answer !== '') break;
    socket.write(piece);
    await sleep(pauseMs);
  }
  await (untilClosed ? closed : Promise.race([closed, waitFor('a whole answer', () => wholeAnswer(answer) || undefined)]));
  socket.destroy();
  return answer;
}

/** True once `answer` holds a head and as many body bytes as its Content-Length says. */
function wholeAnswer(answer: string): boolean {
  const headEnd = answer.indexOf('\r\n\r\n');
  if (headEnd === -1) return false;
  const length = /\r\ncontent-length: *([0-9]+)\r\n/i.exec(answer.slice(0, headEnd + 2));
  return length !== null && answer.length - (headEnd + 4) >= Number(length[1]);
}

describe('request hardening', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => res.end(`read ${bytes}\n`));
  });
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    const upstreamPort = await listenLocal(upstream);
    await server.start(`[security.limits]
max_url_length = 256
max_headers = 16
max_body_size = 2000
max_multipart_size = 5000
max_json_depth = 8
max_form_fields = 10

[security.timeouts]
header_read_timeout = 3
body_read_timeout = 3
min_data_rate = 100

[security.anti_smuggling]
max_request_per_connection = 3
max_chunk_size = 1500

[[vhosts]]
domains = ["hard.test"]
root = "${server.dir}"

${proxyVhost('body.test', upstreamPort)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it('a multipart upload may exceed max_body_size up to max_multipart_size', async () => {
    const part = `--b\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\n${'u'.repeat(3000)}\r\n--b--\r\n`;
    const response = await request(server.port, {
      method: 'POST',
      path: '/',
      headers: { Host: 'body.test', 'Content-Type': 'multipart/form-data; boundary=b' },
      body: part,
    });
    assert.equal(response.status, 200);
    assert.equal(response.body, `read ${Buffer.byteLength(part)}\n`);
  });

  it('a body within the limits reaches the upstream whole', async () => {
    const response = await request(server.port, { method: 'POST', path: '/', headers: { Host: 'body.test' }, body: 'z'.repeat(1500) });
    assert.equal(response.status, 200);
    assert.equal(response.body, 'read 1500\n');
  });

  it('a chunk over max_chunk_size is caught when it arrives over several reads', async () => {
    const head = `POST / HTTP/1.1\r\n${B}Transfer-Encoding: chunked\r\n\r\n640\r\n`;
    const answer = await sendInPieces(server.port, [head + 'a'.repeat(600), 'a'.repeat(600), `${'a'.repeat(400)}\r\n0\r\n\r\n`]);
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /\r\nConnection: close\r\n/i);
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'request.chunk_too_large'));
  });

  it('chunks under max_chunk_size pass however the reads split them', async () => {
    const head = `POST / HTTP/1.1\r\n${B}Transfer-Encoding: chunked\r\n\r\n`;
    // Chunk of 1400 split mid-data; the next read begins with framing, then a 500-byte chunk.
    const answer = await sendInPieces(server.port, [
      `${head}578\r\n${'b'.repeat(700)}`,
      'b'.repeat(700),
      `\r\n1f4\r\n${'c'.repeat(500)}\r\n0\r\n\r\n`,
    ]);
    assert.match(answer, /^HTTP\/1\.1 200 /, answer.slice(0, 100));
    assert.match(answer, /read 1900\n$/);
  });

  for (const entry of cases) {
    it(`${entry.name} -> ${entry.status}, closed, audited, still serving`, async () => {
      const answer = await rawRequest(server.port, entry.bytes);
      assert.equal(Number(answer.slice(9, 12)), entry.status, answer.slice(0, 200));
      // rawRequest resolves on close: the server closed the connection, and said so.
      assert.match(answer, /\r\nConnection: close\r\n/i);
      assert.match(answer, /\r\nX-Content-Type-Options: nosniff\r\n/i, 'security headers on the rejection');
      await waitFor(`audit ${entry.event}`, () => server.logLines().find((line) => line.audit === entry.event));
      assert.equal((await request(server.port, { path: '/', headers: { Host: 'hard.test' } })).status, 200);
    });
  }

  it('the last response of max_request_per_connection says Connection: close, and the connection closes', async () => {
    const get = `GET / HTTP/1.1\r\n${H}\r\n`;
    const answer = await rawRequest(server.port, get + get + get + get);
    const heads = answer.split('HTTP/1.1 200').length - 1;
    assert.equal(heads, 3, 'exactly three requests are answered');
    assert.match(answer.slice(answer.lastIndexOf('HTTP/1.1 200')), /\r\nConnection: close\r\n/i);
  });

  it('a request head trickling under min_data_rate gets 408 within about a second of the grace', async () => {
    const started = Date.now();
    const head = `GET / HTTP/1.1\r\n${H}X-Slow: ${'s'.repeat(200)}\r\n\r\n`;
    const answer = await sendInPieces(server.port, head.match(/[\s\S]{1,5}/g)!, { pauseMs: 250, untilClosed: true });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - started < 4000, 'cut long before header_read_timeout');
    await waitFor('audit', () =>
      server.logLines().find((line) => line.audit === 'request.slow_client' && String(line.detail).startsWith('head')),
    );
  });

  it('a request head not complete within header_read_timeout gets 408, however fast it trickles', async () => {
    const started = Date.now();
    // 250 bytes a second, above min_data_rate, one header line at a time: never finishes.
    const lines = Array.from({ length: 14 }, (_, i) => `X-Line-${i}: ${'v'.repeat(88)}\r\n`);
    // The head's start and the first line go together, then a line every 400 ms.
    const answer = await sendInPieces(server.port, [`GET / HTTP/1.1\r\n${H}${lines[0]}`, ...lines.slice(1)], {
      pauseMs: 400,
      untilClosed: true,
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    const took = Date.now() - started;
    assert.ok(took >= 2900 && took < 5500, `cut at header_read_timeout (3 s), took ${took} ms`);
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'request.timeout'));
    assert.equal((await request(server.port, { path: '/', headers: { Host: 'hard.test' } })).status, 200);
  });

  it('a body trickling under min_data_rate gets 408 and the connection closes', async () => {
    const started = Date.now();
    // The head and the first body byte go together, then a byte every 500 ms.
    const answer = await sendInPieces(server.port, [`POST / HTTP/1.1\r\n${B}Content-Length: 1000\r\n\r\nx`, ...'x'.repeat(7)], {
      pauseMs: 500,
      untilClosed: true,
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - started < 5000, 'cut within about a second of falling under the rate');
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'request.slow_client'));
  });

  it('a body not complete within body_read_timeout gets 408', async () => {
    // 150 bytes a second: above min_data_rate, but 1900 bytes take longer than 3 s.
    const body = Array.from({ length: 12 }, () => 'y'.repeat(75));
    // The head and the first 75 bytes go together, then 75 bytes every 500 ms.
    const answer = await sendInPieces(server.port, [`POST / HTTP/1.1\r\n${B}Content-Length: 1900\r\n\r\n${body[0]}`, ...body.slice(1)], {
      pauseMs: 500,
      untilClosed: true,
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    await waitFor('audit', () => server.logLines().find((line) => line.audit === 'request.body_timeout'));
  });
});

describe('HTTP/1 keepalive_timeout and idle_timeout (the connection sweep)', () => {
  const server = new TestServer();
  // An upstream that takes the request and never answers: nothing moves on the client's connection.
  const silent = http.createServer(() => undefined);
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'kept\n');
    const silentPort = await listenLocal(silent);
    await server.start(`[security.timeouts]
keepalive_timeout = 1
idle_timeout = 4

[[vhosts]]
domains = ["kept.test"]
root = "${server.dir}"

${proxyVhost('silent.test', silentPort)}`);
  });
  after(async () => {
    await server.stop();
    silent.closeAllConnections();
    silent.close();
  });

  /** A raw connection: what it has read so far, and when it closes (ms after it opened). */
  function connect(): { socket: net.Socket; read: () => string; closedAfter: Promise<number> } {
    const socket = net.connect(server.port, '127.0.0.1');
    const opened = performance.now();
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => undefined);
    const closedAfter = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now() - opened)));
    return { socket, read: () => answer, closedAfter };
  }

  it('a kept-alive connection announces keepalive_timeout, is reused within it, and closed no sooner once idle past it', async () => {
    const { socket, read, closedAfter } = connect();
    const get = 'GET / HTTP/1.1\r\nHost: kept.test\r\n\r\n';
    socket.write(get);
    await waitFor('the first answer', () => wholeAnswer(read()) || undefined);
    assert.match(read(), /^HTTP\/1\.1 200 [\s\S]*\r\nKeep-Alive: timeout=1\r\n/i);
    await sleep(600);
    socket.write(get);
    await waitFor('the second answer, on the same connection', () => read().split('HTTP/1.1 200').length === 3 || undefined);
    const idleFrom = performance.now();
    const closed = await Promise.race([closedAfter.then(() => performance.now() - idleFrom), sleep(8000).then(() => null)]);
    assert.notEqual(closed, null, 'the idle connection was closed');
    // Never before the announced second; then a second's grace, and the sweep looks once a second
    // (idle_timeout, 4 s, would have closed it later).
    assert.ok(closed! >= 1000 && closed! < 3800, `closed ${Math.round(closed!)} ms after the last answer`);
    assert.equal((await request(server.port, { path: '/', headers: { Host: 'kept.test' } })).status, 200);
  });

  it('a request waiting on a silent upstream is closed after idle_timeout; another client is served meanwhile', async () => {
    const { socket, read, closedAfter } = connect();
    socket.write('GET /never HTTP/1.1\r\nHost: silent.test\r\n\r\n');
    const served = await request(server.port, { path: '/', headers: { Host: 'kept.test' }, localAddress: '127.0.0.2' });
    assert.equal(served.status, 200);
    const closed = await Promise.race([closedAfter, sleep(10_000).then(() => null)]);
    assert.notEqual(closed, null, 'the silent connection was closed');
    // idle_timeout is 4 s (keepalive_timeout, 1 s, is for connections with no request in flight); the sweep looks once a second.
    assert.ok(closed! >= 3900 && closed! < 7000, `closed after ${Math.round(closed!)} ms`);
    assert.equal(read(), '', 'nothing was answered: the request never got one to send');
  });
});
