/**
 * The master's side of the access log (src/master/access-log-file.ts), fed
 * by streams that stand in for workers' pipes: whole lines only, each
 * worker's partial line apart, an overlong line dropped whole, the file
 * 0640. Hostile input: a worker that never ends a line, one that splits
 * lines at every byte, two that interleave.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, it } from 'node:test';
import pino from 'pino';
import { MAX_ACCESS_LINE_BYTES } from '../../src/ipc/access-log.js';
import { AccessLogFile } from '../../src/master/access-log-file.js';
import { BcryptVerifier } from '../../src/worker/auth/basic.js';

const dir = mkdtempSync(path.join(tmpdir(), 'access-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function settle(file: AccessLogFile): Promise<void> {
  await sleep(50);
  file.flush();
}

it('copies whole lines from every worker, never interleaved, and drops an overlong one whole', async () => {
  const target = path.join(dir, 'sub', 'access.log');
  const file = new AccessLogFile(pino({ level: 'silent' }));
  file.use(target);
  const a = new PassThrough();
  const b = new PassThrough();
  file.attach(a, { pid: 1 });
  file.attach(b, { pid: 2 });
  a.write('worker a line 1\nworker a ');
  b.write('worker b line 1\nworker b');
  a.write('line 2\n');
  for (const byte of Buffer.from(' line 2\n')) b.write(Buffer.from([byte]));
  a.write(`${'x'.repeat(MAX_ACCESS_LINE_BYTES + 10)}\nworker a line 3\n`);
  b.write('y'.repeat(MAX_ACCESS_LINE_BYTES));
  b.write('y'.repeat(100));
  b.write('\nworker b line 3\nunfinished');
  b.end();
  await settle(file);
  const lines = readFileSync(target, 'utf8').split('\n');
  assert.deepEqual(
    lines.sort(),
    ['', 'worker a line 1', 'worker a line 2', 'worker a line 3', 'worker b line 1', 'worker b line 2', 'worker b line 3'].sort(),
  );
  assert.equal(statSync(target).mode & 0o777, 0o640);
  assert.equal(statSync(path.dirname(target)).mode & 0o777, 0o750);
  file.use(null);
});

it('holds at most one line per worker in memory, however long the worker writes without a newline', async () => {
  const target = path.join(dir, 'endless.log');
  const file = new AccessLogFile(pino({ level: 'silent' }));
  file.use(target);
  const endless = new PassThrough();
  file.attach(endless, { pid: 3 });
  for (let i = 0; i < 200; i++) endless.write(Buffer.alloc(64 * 1024, 0x41));
  endless.write('\nafter\n');
  await settle(file);
  assert.equal(readFileSync(target, 'utf8'), 'after\n');
  file.use(null);
});

it('answers 503 rather than queue a 65th password check', async () => {
  const verifier = new BcryptVerifier();
  const hash = '$2b$05$RmrhBa3HJMzazeizh/3QH.nZWIDmaxKpaF1Mp7pXRhYywMjfgM5zu';
  const waiting = Array.from({ length: 64 }, (_, i) => verifier.verify(`guess ${i}`, hash));
  assert.ok(waiting.every((answer) => answer instanceof Promise));
  assert.equal(verifier.verify('one too many', hash), null);
  assert.deepEqual(await Promise.all(waiting), Array(64).fill(false));
  // Answered: the queue is free again, and a remembered answer needs no thread.
  assert.ok(verifier.verify('guess 1', hash) === false);
  await verifier.close();
});
