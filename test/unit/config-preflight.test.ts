/**
 * Compile is pure and the preflight holds every look at the host
 * (src/config/compile.ts, src/config/preflight/): the same raw config and
 * host facts always compile alike, files named by the config are not
 * touched until the preflight reads them, and each preflight check answers
 * for its own key.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { compile } from '../../src/config/compile.js';
import type { HostFacts } from '../../src/config/preflight/host.js';
import { PREFLIGHT_CHECKS, preflight } from '../../src/config/preflight/index.js';
import { configSchema } from '../../src/config/schema.js';
import { ROOT, tempDir } from '../support/harness.js';

const HOST: HostFacts = { cwd: '/srv/site', cpuCount: 7, delegatedCgroup: 'system.slice/miwidothttp.service' };

const raw = (input: unknown) => configSchema.parse(input);

describe('compile', () => {
  it('takes what the host contributes from the facts it is given', () => {
    const { config, problems } = compile(
      raw({ server: { workers: 0, pid_file: 'run/m.pid', log_file: 'log/m.log' }, vhosts: [{ domains: ['*'], root: '/w' }] }),
      'test.toml',
      HOST,
    );
    assert.deepEqual(problems, []);
    assert.equal(config.server.workerCount, 7);
    assert.equal(config.server.pidFile, '/srv/site/run/m.pid');
    assert.equal(config.server.controlSocket, '/srv/site/run/m.sock');
    assert.equal(config.server.logFile, '/srv/site/log/m.log');
    assert.equal(config.isolation.cgroupParent, 'system.slice/miwidothttp.service');
    assert.equal(
      compile(raw({ vhosts: [{ domains: ['*'], root: '/w' }] }), 't', { ...HOST, delegatedCgroup: null }).config.isolation.cgroupParent,
      'miwidothttp.slice',
    );
  });

  it('compiles alike from alike input, and names files without reading them', () => {
    const input = {
      server: { http_port: 80, https_port: 443 },
      ssl: {
        provider: 'acme',
        agree_tos: true,
        cert_dir: '/nonexistent/certs',
        domains: { 'manual.example': { cert_file: '/nonexistent/c.pem', key_file: '/nonexistent/k.pem' } },
        challenges: { dns_01_provider: 'exec', dns_01_command: '/nonexistent/hook' },
      },
      vhosts: [{ domains: ['a.example'], root: '/nonexistent/www' }],
    };
    const first = compile(raw(input), 't', HOST);
    assert.deepEqual(first.problems, [], 'no file is looked at while compiling');
    assert.deepEqual(compile(raw(input), 't', HOST), first);
    assert.equal(first.config.tls?.certificates[0]?.certFile, '/nonexistent/c.pem');
  });

  it('imports nothing that reaches the host', () => {
    for (const file of ['src/config/compile.ts', 'src/config/compile-tls.ts']) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      assert.doesNotMatch(
        text,
        /from 'node:(fs|os|child_process)|fs\/promises|process\.(env|cwd|getuid)|isolation\/|certificates\.js/,
        file,
      );
    }
  });
});

describe('preflight', () => {
  it('runs every check for check, start and reload', () => {
    assert.ok(PREFLIGHT_CHECKS.length >= 8);
    const { config } = compile(raw({ vhosts: [{ domains: ['*'], root: '/w' }] }), 't', HOST);
    for (const purpose of ['check', 'start', 'reload'] as const) assert.deepEqual(preflight(config, purpose), preflight(config, 'check'));
  });

  it('names the manual certificate whose files it cannot read, cert_dir others may enter, a DNS program others may change', () => {
    const dir = tempDir();
    const open = path.join(dir, 'certs');
    mkdirSync(open);
    chmodSync(open, 0o755);
    const program = path.join(dir, 'hook');
    writeFileSync(program, '#!/bin/sh\n');
    chmodSync(program, 0o777);
    const { config } = compile(
      raw({
        server: { http_port: 80, https_port: 443 },
        ssl: {
          provider: 'acme',
          agree_tos: true,
          cert_dir: open,
          domains: { 'manual.example': { cert_file: path.join(dir, 'missing.pem'), key_file: path.join(dir, 'missing.key') } },
          challenges: { dns_01_provider: 'exec', dns_01_command: program },
        },
        vhosts: [{ domains: ['a.example'], root: dir }],
      }),
      't',
      { ...HOST, cwd: dir },
    );
    const keys = preflight(config, 'check').map((problem) => problem.key);
    assert.ok(keys.includes('ssl.domains."manual.example"'), keys.join(', '));
    assert.ok(keys.includes('ssl.cert_dir'), keys.join(', '));
    assert.ok(keys.includes('ssl.challenges.dns_01_command'), keys.join(', '));
  });

  it('names a jail that is not a directory', () => {
    const dir = tempDir();
    const { config } = compile(
      raw({
        process: { isolation: { chroot: path.join(dir, 'missing') } },
        vhosts: [{ domains: ['*'], root: path.join(dir, 'missing/www') }],
      }),
      't',
      HOST,
    );
    assert.deepEqual(
      preflight(config, 'check').filter((problem) => problem.key === 'process.isolation.chroot'),
      [{ key: 'process.isolation.chroot', message: `${path.join(dir, 'missing')} is not a directory` }],
    );
  });
});
