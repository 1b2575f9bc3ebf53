/**
 * `--version` and the commands that only talk to a running master load
 * what they need and not the master: no schema, no TLS issuance, no metrics,
 * no HTTP client, no logger. (That is what makes them answer in a fraction of
 * a second; the test asserts which modules load, never how long it takes.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BIN, tempDir } from '../support/harness.js';

const TRACE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/module-trace.js');

/** The modules `miwidothttp args...` resolves, and its exit status. */
function modulesOf(args: string[]): { status: number | null; modules: string[] } {
  const result = spawnSync(BIN, args, {
    env: { ...process.env, NODE_OPTIONS: `--import ${TRACE}` },
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 60_000,
  });
  const trace = (result.output[3] ?? '').trim();
  assert.notEqual(trace, '', `no module trace; stderr: ${result.stderr}`);
  return { status: result.status, modules: JSON.parse(trace) as string[] };
}

const HEAVY =
  /node_modules\/(zod|pino|acme-client|undici|prom-client|pidusage)\/|dist\/src\/(master\/main|master\/supervisor|worker|tls\/issuance)\b/;

describe('CLI start-up', () => {
  it('--version loads the command-line parser and nothing else of ours', () => {
    const { status, modules } = modulesOf(['--version']);
    assert.equal(status, 0);
    const ours = modules.filter((url) => url.includes('/dist/src/'));
    assert.deepEqual(
      ours.map((url) => url.replace(/^.*\/dist\//, '')),
      ['src/cli/main.js'],
    );
    assert.deepEqual(
      modules.filter((url) => HEAVY.test(url)),
      [],
    );
  });

  it('status finds the pid file without the schema or the master', () => {
    const dir = tempDir();
    const config = path.join(dir, 'miwidothttp.toml');
    writeFileSync(config, `[server]\npid_file = "${dir}/m.pid"\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`);
    const { status, modules } = modulesOf(['status', '-c', config]);
    assert.equal(status, 3, 'not running');
    assert.ok(
      modules.some((url) => url.endsWith('/dist/src/cli/status.js')),
      'the status command ran',
    );
    assert.deepEqual(
      modules.filter((url) => HEAVY.test(url)),
      [],
    );
  });
});
