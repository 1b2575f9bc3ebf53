/**
 * The HTTP/2 request and response the worker hands its pipeline
 * (src/worker/http2.ts http2Handler: its own bodyless pair, Node's
 * compatibility pair for the rest), driven by a real node:http2 client over
 * a real session: what arrives, what ends how, and which events the
 * handlers see in which order.
 */
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { HeaderPolicy } from '../../src/config/types.js';
import { BodylessHttp2Request, Http1ViewRequest } from '../../src/worker/http2-request.js';
import { http2Handler, openStreams } from '../../src/worker/http2.js';
import { preparedRespondAvailable, respondWithBlock } from '../../src/worker/http2-respond.js';
import { bytesSent } from '../../src/worker/http2-response.js';
import { answerCached, useHeaderPolicy } from '../../src/worker/response-headers.js';

const POLICY: HeaderPolicy = {
  add: [
    ['X-Content-Type-Options', 'nosniff'],
    ['X-Powered-By', 'nothing'],
  ],
  addOverHttps: [['Strict-Transport-Security', 'max-age=63072000']],
  remove: ['x-powered-by'],
};
const VHOST_POLICY: HeaderPolicy = { add: [['X-Frame-Options', 'DENY']], addOverHttps: [], remove: [] };
const CACHED = Object.freeze({ 'Content-Type': 'text/plain', 'Content-Length': '5', ETag: '"abc"' });

interface Seen {
  req: IncomingMessage;
  res: ServerResponse;
  events: string[];
}

interface Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  trailers: http2.IncomingHttpHeaders | null;
  rstCode: number | undefined;
  error: Error | null;
}

describe('HTTP/2 request and response objects', () => {
  let server: http2.Http2Server;
  let client: http2.ClientHttp2Session;
  const seen: Seen[] = [];
  const spied: { calls: number; available: boolean; headersSent: boolean }[] = [];

  /** What each path's handler does with the exchange. */
  const handlers: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
    '/pieces': (_req, res) => {
      res.setHeader('X-Piece', '1');
      res.write('ab');
      res.end('c');
    },
    '/head-with-body': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
      res.end('abc');
    },
    '/no-content': (_req, res) => {
      res.statusCode = 204;
      res.end('dropped');
    },
    '/list': (_req, res) => {
      res.writeHead(200, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Connection', 'close', 'X-Powered-By', 'upstream']);
      res.end('listed');
    },
    '/trailers': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.write('data');
      res.addTrailers({ 'grpc-status': '0' });
      res.end();
    },
    '/write-after-end': (_req, res) => {
      res.end('once');
      // A handler bug: the compatibility layer resets the stream; so does ours, without throwing.
      res.write('twice');
    },
    '/cached': (_req, res) => answerCached(res, 200, CACHED, Buffer.from('hello')),
    '/cached-vhost': (_req, res) => {
      useHeaderPolicy(res, VHOST_POLICY);
      answerCached(res, 200, CACHED, Buffer.from('hello'));
    },
    '/cached-after-set': (_req, res) => {
      res.setHeader('X-Extra', 'yes');
      answerCached(res, 200, CACHED, Buffer.from('hello'));
    },
    '/cached-spy': (req, res) => {
      // Counts the calls of Node's respond(): a prepared header block goes without one.
      const stream = (req as unknown as BodylessHttp2Request).stream;
      const respond = stream.respond;
      let calls = 0;
      stream.respond = function (this: http2.ServerHttp2Stream, ...args: Parameters<typeof respond>) {
        calls += 1;
        return respond.apply(this, args);
      };
      const available = preparedRespondAvailable(stream);
      answerCached(res, 200, CACHED, Buffer.from('hello'));
      spied.push({ calls, available, headersSent: stream.headersSent });
    },
    '/block-404': (req, res) => {
      const stream = (req as unknown as BodylessHttp2Request).stream;
      const taken = respondWithBlock(stream, [':status\x00404\x00\x00x-block\x00yes\x00\x00', 2], true);
      spied.push({ calls: 0, available: taken, headersSent: stream.headersSent });
      if (!taken) res.end('not taken');
    },
    '/open-streams': (req, res) => {
      const stream = (req as unknown as BodylessHttp2Request).stream;
      const table = openStreams(stream.session as http2.ServerHttp2Session);
      res.end(JSON.stringify({ listed: table?.get(stream.id ?? -1) === stream, sentBefore: bytesSent(stream) }));
    },
    '/echo-body': (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => res.end(`got ${Buffer.concat(chunks).toString()}`));
    },
  };

  before(async () => {
    server = http2.createServer();
    const handle = http2Handler(
      POLICY,
      (stream) => stream.session?.socket as Socket | undefined,
      (req, res) => {
        const record: Seen = { req, res, events: [] };
        seen.push(record);
        res.once('finish', () => record.events.push(`finish writableEnded=${res.writableEnded}`));
        res.once('close', () => record.events.push('close'));
        req.once('close', () => record.events.push('request close'));
        (handlers[req.url ?? ''] ?? ((_q, s) => s.end('?')))(req, res);
      },
    );
    server.on('stream', handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    client.on('error', () => undefined);
  });

  after(async () => {
    client.close();
    await new Promise((resolve) => server.close(resolve));
  });

  function request(path: string, extra: http2.OutgoingHttpHeaders = {}, body?: string): Promise<Answer> {
    return new Promise((resolve) => {
      const stream = client.request({ ':path': path, ...extra }, { endStream: body === undefined });
      const answer: Answer = { status: 0, headers: {}, body: '', trailers: null, rstCode: undefined, error: null };
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => {
        answer.headers = headers;
        answer.status = Number(headers[':status']);
      });
      stream.on('trailers', (trailers) => {
        answer.trailers = trailers;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (error: Error) => {
        answer.error = error;
      });
      stream.on('close', () => {
        answer.body = Buffer.concat(chunks).toString();
        answer.rstCode = stream.rstCode;
        resolve(answer);
      });
      if (body !== undefined) stream.end(body);
    });
  }

  /** The stream ended cleanly (END_STREAM, no reset, no error) and carried no body. */
  function assertEndedWithoutBody(answer: Answer): void {
    assert.equal(answer.body, '');
    assert.equal(answer.error, null);
    assert.equal(answer.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  }

  /** The handler's record of the last request, once its response closed. */
  async function lastSeen(): Promise<Seen> {
    const record = seen.at(-1)!;
    for (let i = 0; i < 50 && !record.events.includes('request close'); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    return record;
  }

  it('a bodyless request gets the lean pair: HTTP/1.1 view of its headers, complete, nothing to read', async () => {
    const answer = await request('/pieces', { cookie: 'a=1', 'x-test': 'yes' });
    const { req } = await lastSeen();
    assert.ok(req instanceof BodylessHttp2Request);
    assert.equal(req.method, 'GET');
    assert.equal(req.httpVersionMajor, 2);
    assert.equal(req.complete, true);
    assert.equal(req.headers.host, `127.0.0.1:${(server.address() as AddressInfo).port}`);
    assert.equal(req.headers['x-test'], 'yes');
    assert.equal(
      Object.keys(req.headers).some((name) => name.startsWith(':')),
      false,
      'no pseudo-header in the view',
    );
    assert.ok(req.rawHeaders.includes('cookie'));
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'abc');
    assert.equal(answer.headers['x-piece'], '1');
  });

  it('fields set one by one and written in pieces: the policy adds its headers, removes its names, Date is sent', async () => {
    const answer = await request('/pieces');
    assert.equal(answer.headers['x-content-type-options'], 'nosniff');
    assert.equal(answer.headers['strict-transport-security'], 'max-age=63072000');
    assert.equal(answer.headers['x-powered-by'], undefined);
    assert.ok(answer.headers.date);
  });

  it("'finish' then 'close' on the response, then the request's 'close'; ended, and the headers sent", async () => {
    await request('/pieces');
    const { res, events } = await lastSeen();
    assert.deepEqual(events, ['finish writableEnded=true', 'close', 'request close']);
    assert.equal(res.headersSent, true);
    assert.equal(res.writableEnded, true);
    assert.equal(res.socket, undefined, 'no socket once the stream closed');
  });

  it('HEAD: the head is sent, a body given anyway is dropped (as over HTTP/1), the stream ends cleanly', async () => {
    const answer = await request('/head-with-body', { ':method': 'HEAD' });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['content-length'], '3');
    assertEndedWithoutBody(answer);
  });

  it('204: a body given anyway is dropped, no reset', async () => {
    const answer = await request('/no-content');
    assert.equal(answer.status, 204);
    assertEndedWithoutBody(answer);
  });

  it('a flat list: repeated fields kept apart, connection-specific and removed names dropped', async () => {
    const answer = await request('/list');
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(answer.headers.connection, undefined);
    assert.equal(answer.headers['x-powered-by'], undefined);
    assert.equal(answer.headers['x-content-type-options'], 'nosniff');
    assert.equal(answer.body, 'listed');
  });

  it('trailers go to a client that said TE: trailers, and to no other', async () => {
    const withTe = await request('/trailers', { te: 'trailers' });
    assert.equal(withTe.body, 'data');
    assert.equal(withTe.trailers?.['grpc-status'], '0');
    const without = await request('/trailers');
    assert.equal(without.body, 'data');
    assert.equal(without.trailers, null);
    assert.equal(without.error, null);
  });

  it('a write after end resets that stream only; the session serves on', async () => {
    const broken = await request('/write-after-end');
    assert.notEqual(broken.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    const next = await request('/pieces');
    assert.equal(next.body, 'abc');
  });

  it('a cached answer: one respond() with the prepared head, under the vhost policy once set; fields set first still go', async () => {
    const plain = await request('/cached');
    assert.equal(plain.status, 200);
    assert.equal(plain.body, 'hello');
    assert.equal(plain.headers.etag, '"abc"');
    assert.equal(plain.headers['x-content-type-options'], 'nosniff');
    assert.ok(plain.headers.date);
    const vhost = await request('/cached-vhost');
    assert.equal(vhost.headers['x-frame-options'], 'DENY');
    assert.equal(vhost.headers['x-content-type-options'], undefined);
    const head = await request('/cached', { ':method': 'HEAD' });
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], '5');
    const extra = await request('/cached-after-set');
    assert.equal(extra.headers['x-extra'], 'yes');
    assert.equal(extra.body, 'hello');
  });

  it("a cached answer goes to nghttp2 as a prepared header block without Node's respond(), the same fields as with it", async () => {
    // Pins the Node internals http2-respond.ts uses: without them every answer takes Node's respond().
    const viaBlock = await request('/cached-spy');
    assert.deepEqual(spied.at(-1), { calls: 0, available: true, headersSent: true });
    assert.equal(viaBlock.body, 'hello');
    assert.equal(viaBlock.error, null);
    assert.equal(viaBlock.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    // With a subscriber on the channel respond() reports to, Node's respond() answers, and reports.
    const reported: unknown[] = [];
    const onReport = (message: unknown) => reported.push(message);
    diagnosticsChannel.subscribe('http2.server.stream.finish', onReport);
    let viaNode: Answer;
    try {
      viaNode = await request('/cached-spy');
    } finally {
      diagnosticsChannel.unsubscribe('http2.server.stream.finish', onReport);
    }
    assert.equal(spied.at(-1)?.calls, 1);
    assert.equal(reported.length, 1);
    const withoutDate = ({ date: _date, ...rest }: http2.IncomingHttpHeaders) => rest;
    assert.deepEqual(withoutDate(viaBlock.headers), withoutDate(viaNode.headers));
    assert.match(String(viaBlock.headers.date), /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    // A client that takes trailers gets Node's respond(), which asks for them.
    await request('/cached-spy', { te: 'trailers' });
    assert.equal(spied.at(-1)?.calls, 1);
    // HEAD: the prepared block ends the stream, cleanly.
    const head = await request('/cached-spy', { ':method': 'HEAD' });
    assert.deepEqual(spied.at(-1), { calls: 0, available: true, headersSent: true });
    assert.equal(head.headers['content-length'], '5');
    assertEndedWithoutBody(head);
  });

  it('a header block handed over with no body to follow: the status and fields arrive, the stream ends cleanly', async () => {
    const answer = await request('/block-404');
    assert.deepEqual(spied.at(-1), { calls: 0, available: true, headersSent: true });
    assert.equal(answer.status, 404);
    assert.equal(answer.headers['x-block'], 'yes');
    assertEndedWithoutBody(answer);
  });

  it("the sweep finds a session's open streams in Node's own table, and what each answer has sent", async () => {
    // Pins Node's internal session[kState].streams: without it, every stream falls back to a timer of its own.
    const answer = await request('/open-streams');
    assert.deepEqual(JSON.parse(answer.body), { listed: true, sentBefore: 0 });
  });

  it('a closed stream lets go of the response, and with it the request and the exchange', async () => {
    await request('/pieces');
    const { req } = await lastSeen();
    const stream = (req as unknown as BodylessHttp2Request).stream;
    assert.equal(stream.closed, true);
    assert.equal(bytesSent(stream), null);
  });

  it("a request with a body gets Node's compatibility pair, a Readable of the body", async () => {
    const answer = await request('/echo-body', { ':method': 'POST' }, 'payload');
    assert.equal(answer.body, 'got payload');
    const { req } = await lastSeen();
    assert.ok(req instanceof Http1ViewRequest);
    assert.equal(req.headers[':path'], undefined);
  });

  it('Expect: 100-continue reaches the handler; any other expectation is answered 417 without it', async () => {
    const before = seen.length;
    const continued = await request('/echo-body', { ':method': 'POST', expect: '100-continue' }, 'x');
    assert.equal(continued.body, 'got x');
    const refused = await request('/pieces', { expect: 'something-else' });
    assert.equal(refused.status, 417);
    assert.equal(seen.length, before + 1);
  });
});
