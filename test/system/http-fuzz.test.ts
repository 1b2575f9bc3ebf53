/**
 * A time-boxed fuzz run over HTTP framing against the real, sandboxed
 * server: mutated requests (bytes flipped, inserted, deleted; header lines
 * duplicated; framing headers rewritten) must each get a well-formed answer
 * or a close, and no worker may die. Seeded, so a failure replays.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listenLocal, proxyVhost, request, TestServer } from '../support/harness.js';

const SEED = Number(process.env.HTTP_FUZZ_SEED ?? 0x5eed);
const BUDGET_MS = Number(process.env.HTTP_FUZZ_MS ?? 6000);

/** xorshift32: small, deterministic. */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x100000000;
  };
}

const SEEDS = [
  'GET / HTTP/1.1\r\nHost: fuzz.test\r\n\r\n',
  'GET /index.html?x=1 HTTP/1.1\r\nHost: fuzz.test\r\nRange: bytes=0-3\r\nIf-None-Match: "x"\r\n\r\n',
  'POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{"a":[1,2]}',
  'POST /up HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET / HTTP/1.0\r\nHost: fuzz.test\r\nConnection: keep-alive\r\n\r\n',
];
const INTERESTING = [
  '\r',
  '\n',
  '\0',
  ' ',
  '\t',
  ':',
  ',',
  '"',
  '%',
  '\\',
  '\x7f',
  '\xff',
  'chunked',
  'Content-Length: 5',
  'Transfer-Encoding: chunked',
  'Host: other.test',
  '0\r\n\r\n',
  'HTTP/2.0',
  '..',
  '%2e%2e/',
];

function mutate(random: () => number, input: string): string {
  let text = input;
  const rounds = 1 + Math.floor(random() * 4);
  for (let r = 0; r < rounds; r++) {
    const at = Math.floor(random() * (text.length + 1));
    switch (Math.floor(random() * 6)) {
      case 0: // flip one byte
        text = text.slice(0, at) + String.fromCharCode(Math.floor(random() * 256)) + text.slice(at + 1);
        break;
      case 1: // insert an interesting token
        text = text.slice(0, at) + INTERESTING[Math.floor(random() * INTERESTING.length)] + text.slice(at);
        break;
      case 2: // delete a run
        text = text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 8));
        break;
      case 3: {
        // duplicate a header line
        const lines = text.split('\r\n');
        const line = lines[1 + Math.floor(random() * Math.max(1, lines.length - 2))] ?? '';
        text = text.replace('\r\n', `\r\n${line}\r\n`);
        break;
      }
      case 4: // pipeline a second request
        text += SEEDS[Math.floor(random() * SEEDS.length)];
        break;
      default: // truncate
        text = text.slice(0, at);
    }
  }
  return text;
}

/** Send, half-close, collect until the server closes or 2 s pass. */
function send(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('connect', () => socket.end(bytes));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

describe('HTTP framing fuzz', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('upstream\n'));
  });
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'fuzz\n');
    const port = await listenLocal(upstream);
    await server.start(`[[vhosts]]
domains = ["fuzz.test"]
root = "${server.dir}"

${proxyVhost('api.test', port)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it(`every mutated request gets a well-formed answer or a close, and no worker dies (seed ${SEED})`, async () => {
    const workersBefore = server
      .status()
      .workers.map((worker) => worker.pid)
      .sort();
    const random = prng(SEED);
    const until = Date.now() + BUDGET_MS;
    let sent = 0;
    while (Date.now() < until) {
      const input = mutate(random, SEEDS[Math.floor(random() * SEEDS.length)]!);
      const answer = (await send(server.port, Buffer.from(input, 'latin1'))).toString('latin1');
      sent += 1;
      if (answer.length === 0) continue; // closed without an answer
      // Every answer on the connection starts with a status line.
      assert.match(answer, /^HTTP\/1\.1 [1-5][0-9]{2} [^\r\n]*\r\n/, `seed ${SEED}, input ${JSON.stringify(input)}`);
    }
    assert.ok(sent > 50, `fuzzed ${sent} requests`);
    const deaths = server.logLines().filter((line) => line.msg === 'worker died' || line.level === 50 || line.level === 60);
    assert.deepEqual(
      server
        .status()
        .workers.map((worker) => worker.pid)
        .sort(),
      workersBefore,
      `a worker died: ${JSON.stringify(deaths).slice(0, 3000)}`,
    );
    assert.equal(server.logLines().filter((line) => line.msg === 'worker died').length, 0);
    assert.equal((await request(server.port, { path: '/', headers: { Host: 'fuzz.test' } })).status, 200);
  });
});
