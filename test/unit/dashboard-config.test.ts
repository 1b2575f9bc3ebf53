/**
 * [server.dashboard] through the load path `check` and `start` share: what
 * is refused (one line naming the key), and what the workers get (the
 * listener, the token's digest and the cookie key, never the token).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseListenAddress } from '../../src/config/dashboard.js';
import { loadConfig } from '../../src/config/load.js';
import { forWorkers } from '../../src/config/types.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'miwidothttp-dashboard-config-'));
// The site root exists and the workers may list it: check refuses a root they cannot serve.
mkdirSync(path.join(dir, 'www'), { mode: 0o755 });
after(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = '3f'.repeat(32);
let files = 0;

function load(dashboard: string, env: NodeJS.ProcessEnv = { DASHBOARD_TOKEN: TOKEN }, server = '') {
  const file = path.join(dir, `c${files++}.toml`);
  writeFileSync(
    file,
    // The site apart from the state and the config: without a chroot, roots are bound into the workers' jail.
    `[server]\nstate_dir = "${dir}/state"\n${server}\n[server.dashboard]\n${dashboard}\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}/www"\n`,
  );
  return loadConfig(file, env);
}

describe('[server.dashboard]', () => {
  it('is off by default: no listener', () => {
    const loaded = load('');
    assert.ok(loaded.ok);
    assert.equal(loaded.config.server.dashboard, null);
    assert.ok(loaded.config.listeners.every((listener) => listener.purpose !== 'dashboard'));
  });

  it('enabled: a listener of its own on 127.0.0.1:9146, the token only as its digest', () => {
    const loaded = load('enabled = true\ntoken = "${DASHBOARD_TOKEN}"');
    assert.ok(loaded.ok, loaded.ok ? '' : loaded.errors.join('\n'));
    const spec = loaded.config.server.dashboard!;
    assert.equal(spec.tokenSha256, createHash('sha256').update(TOKEN).digest('hex'));
    assert.match(spec.sessionKey, /^[0-9a-f]{64}$/);
    assert.deepEqual(
      loaded.config.listeners.find((listener) => listener.purpose === 'dashboard'),
      { id: 'dashboard 127.0.0.1:9146', purpose: 'dashboard', protocol: 'http', address: '127.0.0.1', port: 9146 },
    );
    assert.ok(!JSON.stringify(forWorkers(loaded.config)).includes(TOKEN), 'the workers never get the token');
  });

  it('a new token makes a new cookie key: every login ends', () => {
    const one = load('enabled = true\ntoken = "${DASHBOARD_TOKEN}"');
    const two = load('enabled = true\ntoken = "${DASHBOARD_TOKEN}"', { DASHBOARD_TOKEN: '4e'.repeat(32) });
    assert.ok(one.ok && two.ok);
    assert.notEqual(one.config.server.dashboard!.sessionKey, two.config.server.dashboard!.sessionKey);
  });

  const refused: [string, string, NodeJS.ProcessEnv?, string?][] = [
    ['no token', 'enabled = true', undefined],
    ['an empty token', 'enabled = true\ntoken = ""'],
    ['a token of 31 bytes', `enabled = true\ntoken = "${'a'.repeat(31)}"`],
    ['a token a Bearer header cannot carry', `enabled = true\ntoken = "${'a'.repeat(40)} b"`],
    ['an unset variable', 'enabled = true\ntoken = "${DASHBOARD_TOKEN}"', {}],
    ['a listen address without a port', 'enabled = true\nlisten = "127.0.0.1"\ntoken = "${DASHBOARD_TOKEN}"'],
    ['a host name to listen on', 'enabled = true\nlisten = "localhost:9146"\ntoken = "${DASHBOARD_TOKEN}"'],
    ['the HTTP port', 'enabled = true\nlisten = "127.0.0.1:8080"\ntoken = "${DASHBOARD_TOKEN}"'],
    [
      'the metrics port',
      'enabled = true\nlisten = "127.0.0.1:9145"\ntoken = "${DASHBOARD_TOKEN}"',
      undefined,
      '[server.metrics]\nenabled = true\n',
    ],
  ];
  for (const [what, toml, env, server] of refused) {
    it(`refuses ${what} with one line naming the key`, () => {
      const loaded = load(toml, env ?? { DASHBOARD_TOKEN: TOKEN }, server);
      assert.equal(loaded.ok, false);
      assert.ok(!loaded.ok);
      assert.equal(loaded.errors.length, 1, loaded.errors.join('\n'));
      assert.match(loaded.errors[0]!, /: server\.dashboard\.(token|listen): .* \(line \d+\)$/);
      assert.ok(!loaded.errors[0]!.includes('a'.repeat(31)), 'the token is never echoed');
    });
  }
});

describe('listen addresses', () => {
  const cases: [string, { address: string; port: number } | null][] = [
    ['127.0.0.1:9146', { address: '127.0.0.1', port: 9146 }],
    ['[::1]:9146', { address: '::1', port: 9146 }],
    ['0.0.0.0:1', { address: '0.0.0.0', port: 1 }],
    ['::1:9146', null],
    ['[127.0.0.1]:9146', null],
    ['127.0.0.1:0', null],
    ['127.0.0.1:65536', null],
    ['127.0.0.1:+80', null],
    ['300.0.0.1:80', null],
    [' 127.0.0.1:80', null],
  ];
  for (const [text, expected] of cases) it(`${JSON.stringify(text)}`, () => assert.deepEqual(parseListenAddress(text), expected));
});
