/**
 * A hostile worker, for test/system/hostile-worker.test.ts: the built
 * package copied into a temporary directory (dist/src, bin, package.json,
 * the helper binaries; node_modules linked), with the worker entry replaced
 * by a program that loads the real worker (its own entry, renamed) and,
 * when a request asks for /__hostile/<attack>, runs that attack from inside
 * the sandbox with the worker's own descriptors. Nothing in the production
 * code knows about it: the master, the helper and the worker are the real
 * ones, and only the copy's entry file differs.
 *
 * Before an attack the worker stops accepting and lets its other
 * connections finish, so a client of the test only ever meets the workers
 * that are not attacking: a failed request is then the master's fault.
 */
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './harness.js';

/** The attack program, plain JavaScript: it runs as the worker's entry. */
const HOSTILE_MAIN = String.raw`
import http from 'node:http';
import net from 'node:net';
import { writeSync } from 'node:fs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (n) => Array.from({ length: n }, (_, i) => i);
const listening = new Set();
const open = new Set();

// The worker's listening servers and the connections they took: to stop accepting before an attack.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  listening.add(this);
  return listen.apply(this, args);
};
const serverEmit = net.Server.prototype.emit;
net.Server.prototype.emit = function (event, ...args) {
  if (event === 'connection' && listening.has(this)) {
    const socket = args[0];
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  }
  return serverEmit.call(this, event, ...args);
};
const httpEmit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && typeof req.url === 'string' && req.url.startsWith('/__hostile/')) {
    void run(req, res);
    return true;
  }
  return httpEmit.call(this, event, req, res);
};

/** One frame of the channel: a 4-byte big-endian length, then the payload. */
const frame = (message) => {
  const payload = Buffer.from(typeof message === 'string' ? message : JSON.stringify(message));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length);
  return Buffer.concat([header, payload]);
};
const waitCell = new Int32Array(new SharedArrayBuffer(4));
/** Bytes straight onto fd 3, the channel to the master, whatever the worker's own writes are doing. */
const raw = (bytes) => {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(3, bytes, offset, bytes.length - offset);
    } catch (error) {
      if (error.code !== 'EAGAIN') throw error;
      Atomics.wait(waitCell, 0, 0, 2);
    }
  }
};
const channelSocket = () => process._getActiveHandles().find((handle) => handle instanceof net.Socket && handle._handle?.fd === 3);
const audit = (event, detail) => frame({ type: 'AUDIT_EVENT', event: { event, detail } });

const ATTACKS = {
  garbage: () => raw(Buffer.from('this is not a frame\n')),
  'oversized-header': () => raw(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(1024 * 1024, 0x61)])),
  'never-ending-frame': () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(60000);
    raw(Buffer.concat([header, Buffer.from('{"type":"CTL_PONG","seq":')]));
  },
  'deep-nesting': () => raw(frame('['.repeat(30000) + ']'.repeat(30000))),
  'unknown-type': () => raw(frame({ type: 'CFG_INIT', generation: 1 })),
  'node-ipc': () => raw(Buffer.from('{"cmd":"NODE_HANDLE_ACK"}\n')),
  'after-verdict': () =>
    raw(
      Buffer.concat([
        frame({ type: 'NOT_A_MESSAGE' }),
        audit('request.bad', 'honoured-after-verdict'),
        frame({ type: 'IDS_MATCH', ip: '203.0.113.99', rule: 'sqli', score: 1000 }),
      ]),
    ),
  'ids-ban': () => raw(Buffer.concat(range(200).map((i) => frame({ type: 'IDS_MATCH', ip: '198.51.100.' + i, rule: 'sqli', score: 1000 })))),
  'lease-ban': () => raw(Buffer.concat(range(200).map((i) => frame({ type: 'LIM_LEASE', id: 1e6 + i, ip: '198.51.100.' + i, want: 64 })))),
  'report-ban': () =>
    raw(Buffer.concat(range(10).map((b) => frame({ type: 'LIM_REPORT', entries: range(48).map((i) => ['10.99.' + b + '.' + i, 0, 1000]) })))),
  'connect-flood': () =>
    raw(Buffer.concat(range(5000).map((i) => frame({ type: 'LIM_CONNECT', id: 1e6 + i, ip: '2001:db8::' + (i + 1).toString(16) })))),
  'scrape-unread': async () => {
    channelSocket()?.pause();
    for (let i = 0; i < 5000; i++) {
      raw(frame({ type: 'MET_SCRAPE', id: 1e6 + i }));
      await sleep(5);
    }
  },
  'metric-labels': () => raw(frame({ type: 'MET_REPORT', connections: 0, requests: [['evil.example', 200, 1]], rejections: [], idsMatches: [] })),
  'audit-flood': async () => {
    raw(Buffer.concat(range(20000).map(() => audit('request.bad', 'audit-flood'))));
    await sleep(2500);
    raw(audit('admin.ban_remove', 'forged'));
  },
  /** Only stops accepting (the test then stops the worker from outside). */
  'stop-accepting': () => undefined,
  spin: () => {
    for (;;) {}
  },
};

/** Probes that leave the worker serving. */
const PROBES = {
  signal: (url) => {
    const target = Number(url.searchParams.get('pid'));
    if (target === process.pid) return { signal: 'self' };
    try {
      process.kill(target, 'SIGSTOP');
      return { signal: 'delivered' };
    } catch (error) {
      return { signal: error.code };
    }
  },
  identity: () => ({ ipc: typeof process.send, channel: typeof process.channel, env: Object.keys(process.env).sort() }),
  /** A listening port of its own: the answer is what listen's error said. */
  listen: () =>
    new Promise((resolve) => {
      const server = net.createServer();
      server.once('error', (error) => resolve({ listen: error.code }));
      server.listen(0, '127.0.0.1', () => {
        resolve({ listen: 'listening on ' + server.address().port });
        server.close();
      });
    }),
};

async function run(req, res) {
  const url = new URL(req.url, 'http://worker');
  const name = url.pathname.slice('/__hostile/'.length);
  const probe = PROBES[name];
  if (probe !== undefined) {
    res.end(JSON.stringify({ pid: process.pid, ...(await probe(url)) }));
    return;
  }
  const attack = ATTACKS[name];
  if (attack === undefined) {
    res.statusCode = 404;
    res.end('no such attack\n');
    return;
  }
  // Stop taking connections and let the others finish: the attack must not cost a client of the test a request.
  for (const server of listening) server.close();
  const until = Date.now() + 10000;
  while ([...open].some((socket) => socket !== req.socket) && Date.now() < until) await sleep(20);
  res.setHeader('Connection', 'close');
  res.end(JSON.stringify({ pid: process.pid }));
  await sleep(200);
  await attack(url);
}

await import('./real-main.js');
`;

/** Builds the hostile package; returns its root (remove it with rmSync when done). */
export function hostilePackage(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'miwidothttp-hostile-'));
  chmodSync(root, 0o755);
  cpSync(path.join(ROOT, 'dist/src'), path.join(root, 'dist/src'), { recursive: true });
  cpSync(path.join(ROOT, 'bin'), path.join(root, 'bin'), { recursive: true });
  cpSync(path.join(ROOT, 'package.json'), path.join(root, 'package.json'));
  mkdirSync(path.join(root, 'native-helpers/build'), { recursive: true });
  // The helper, the notifier and the shims the helper preloads into node.
  for (const built of readdirSync(path.join(ROOT, 'native-helpers/build')))
    if (built.startsWith('miwidothttp-'))
      cpSync(path.join(ROOT, 'native-helpers/build', built), path.join(root, 'native-helpers/build', built));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  const worker = path.join(root, 'dist/src/worker');
  renameSync(path.join(worker, 'main.js'), path.join(worker, 'real-main.js'));
  writeFileSync(path.join(worker, 'main.js'), HOSTILE_MAIN);
  return root;
}

export function removeHostilePackage(root: string): void {
  rmSync(root, { recursive: true, force: true });
}
