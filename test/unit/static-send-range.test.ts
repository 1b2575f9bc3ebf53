/**
 * sendFileRange (src/worker/handlers/static/send-range.ts): a file's bytes
 * through a real node:http response, in reads into two buffers used again,
 * closing the descriptor however it ends.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sendFileRange } from '../../src/worker/handlers/static/send-range.js';

const CHUNK = 4096;

interface Sent {
  /** Distinct buffers the response was handed (chunks of one buffer count once). */
  buffers: Set<ArrayBufferLike>;
  writes: number;
  error: NodeJS.ErrnoException | null;
  /** Whether the descriptor was closed by the time done ran (and after). */
  closed: Promise<boolean>;
}

describe('sendFileRange', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'send-range-'));
  const file = path.join(dir, 'data.bin');
  const data = randomBytes(CHUNK * 10 + 123);
  let server: http.Server;
  let port = 0;
  let sent: Sent;
  /** What the next request asks of sendFileRange: its range, and whether to claim more bytes than the file has. */
  let ask: { start: number; end: number; length: number } = { start: 0, end: 0, length: 0 };

  before(async () => {
    writeFileSync(file, data);
    server = http.createServer(async (_req, res) => {
      const handle = await open(file, 'r');
      const buffers = new Set<ArrayBufferLike>();
      const write = res.write.bind(res) as (...args: unknown[]) => boolean;
      const record: Sent = { buffers, writes: 0, error: null, closed: Promise.resolve(false) };
      res.write = ((chunk: Buffer, ...rest: unknown[]) => {
        buffers.add(chunk.buffer);
        record.writes += 1;
        return write(chunk, ...rest);
      }) as typeof res.write;
      sent = record;
      res.writeHead(200, { 'Content-Length': String(ask.length) });
      let settle: (closed: boolean) => void = () => undefined;
      record.closed = new Promise((resolve) => (settle = resolve));
      sendFileRange(handle, res, ask.start, ask.end, CHUNK, (error) => {
        record.error = error;
        // A closed FileHandle has fd -1 once its close settled.
        setTimeout(() => settle(handle.fd === -1), 50);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => server.close());

  function get(): Promise<{ body: Buffer; complete: boolean }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      http
        .get({ port, host: '127.0.0.1', path: '/' }, (res) => {
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('close', () => resolve({ body: Buffer.concat(chunks), complete: res.complete }));
        })
        .on('error', () => resolve({ body: Buffer.concat(chunks), complete: false }));
    });
  }

  it('sends the whole file in reads into two buffers, then closes the descriptor', async () => {
    ask = { start: 0, end: data.length - 1, length: data.length };
    const answer = await get();
    assert.equal(answer.complete, true);
    assert.ok(answer.body.equals(data), 'the body is the file');
    assert.equal(sent.writes, 11);
    assert.equal(sent.buffers.size, 2, 'two buffers, used again');
    assert.equal(await sent.closed, true);
    assert.equal(sent.error, null);
  });

  it('sends a range that starts and ends inside chunks', async () => {
    ask = { start: 1000, end: CHUNK * 3 + 17, length: CHUNK * 3 + 17 - 1000 + 1 };
    const answer = await get();
    assert.equal(answer.complete, true);
    assert.ok(answer.body.equals(data.subarray(1000, CHUNK * 3 + 18)));
    assert.equal(await sent.closed, true);
  });

  it('a file shorter than its announced length: the response is destroyed (the client sees it cut short), and done gets the error', async () => {
    ask = { start: 0, end: data.length + 999, length: data.length + 1000 };
    const answer = await get();
    assert.equal(answer.complete, false, 'not taken for a whole body');
    assert.equal(answer.body.length, data.length);
    assert.equal(await sent.closed, true);
    assert.equal(sent.error?.code, 'ESHORTFILE');
  });

  it('a client that goes away mid-body: reading stops and the descriptor is closed', async () => {
    const big = path.join(dir, 'big.bin');
    writeFileSync(big, Buffer.alloc(64 * 1024 * 1024));
    const handle = await open(big, 'r');
    let reads = 0;
    const read = handle.read.bind(handle) as (...args: unknown[]) => Promise<unknown>;
    handle.read = ((...args: unknown[]) => {
      reads += 1;
      return read(...args);
    }) as typeof handle.read;
    const done = new Promise<NodeJS.ErrnoException | null>((resolve) => {
      const side = http.createServer((_req, res) => {
        res.writeHead(200, { 'Content-Length': String(64 * 1024 * 1024) });
        sendFileRange(handle, res, 0, 64 * 1024 * 1024 - 1, CHUNK, resolve);
      });
      side.listen(0, '127.0.0.1', () => {
        const request = http.get({ port: (side.address() as AddressInfo).port, host: '127.0.0.1', path: '/' }, (res) => {
          res.once('data', () => request.destroy());
        });
        request.on('error', () => undefined);
        request.on('close', () => side.close());
      });
    });
    assert.equal(await done, null);
    const readsAtClose = reads;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(reads, readsAtClose, 'no read after the response closed');
    assert.ok(readsAtClose < (64 * 1024 * 1024) / CHUNK, `${readsAtClose} reads, far from the whole file`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(handle.fd, -1, 'the descriptor is closed');
  });
});
