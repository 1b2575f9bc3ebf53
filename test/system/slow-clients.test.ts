/**
 * Slow clients against a real server with slowhttptest (Debian package):
 * slowloris (slow headers), R-U-Dead-Yet (slow body) and slow read. Each
 * attack's connections are cut by the timeouts of [security.timeouts], and
 * a client on another address (127.0.0.2) is served without a miss while
 * the attack runs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenLocal, proxyVhost, TestServer } from '../support/harness.js';

const BIG = Buffer.alloc(8 * 1024 * 1024, 'b');

/** Requests from 127.0.0.2 every 100 ms until stopped; returns [served, missed]. */
function probe(port: number): { stop(): Promise<{ served: number; missed: string[] }> } {
  let running = true;
  let served = 0;
  const missed: string[] = [];
  const loop = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', localAddress: '127.0.0.2', agent: false, timeout: 3000 }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) served += 1;
            else missed.push(`status ${res.statusCode}`);
            resolve();
          });
        });
        req.on('timeout', () => req.destroy(new Error('probe timed out')));
        req.on('error', (error) => {
          missed.push(error.message);
          resolve();
        });
      });
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { served, missed };
    },
  };
}

function slowhttptest(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('slowhttptest', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', () => resolve(output));
  });
}

describe('slow clients (slowhttptest)', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => {
    if (req.url === '/big') {
      res.end(BIG);
      return;
    }
    req.resume();
    req.on('end', () => res.end('ok\n'));
  });

  before(async () => {
    const port = await listenLocal(upstream);
    await server.start(`[security.timeouts]
header_read_timeout = 10
body_read_timeout = 4
write_timeout = 3
min_data_rate = 100

${proxyVhost('*', port)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  const attacks: [string, string[], string][] = [
    // ~10 header bytes a second: under min_data_rate long before header_read_timeout.
    ['slowloris (slow headers)', ['-H', '-i', '1', '-x', '4'], 'request.slow_client'],
    ['R-U-Dead-Yet (slow body)', ['-B', '-i', '1', '-x', '2', '-s', '8192'], 'request.slow_client'],
    ['slow read', ['-X', '-k', '2', '-n', '1', '-w', '16', '-y', '32', '-z', '16'], 'response.write_timeout'],
  ];
  for (const [name, mode, event] of attacks) {
    it(`${name}: attack connections are cut, another client is served without a miss`, async () => {
      const before = server.logLines().filter((line) => line.audit === event).length;
      const load = probe(server.port);
      const path = mode[0] === '-X' ? '/big' : '/';
      const report = await slowhttptest([
        ...mode,
        '-c',
        '100',
        '-r',
        '50',
        '-l',
        '10',
        '-p',
        '3',
        '-u',
        `http://127.0.0.1:${server.port}${path}`,
      ]);
      const { served, missed } = await load.stop();
      assert.deepEqual(missed, [], 'the other client missed requests');
      assert.ok(served > 20, `the other client was served (${served})`);
      const cut = server.logLines().filter((line) => line.audit === event).length - before;
      assert.ok(cut >= 50, `${cut} attack connections cut with ${event}\n${report.slice(-600)}`);
    });
  }
});
