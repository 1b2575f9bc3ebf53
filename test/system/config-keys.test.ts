/**
 * Issue 14: no key is accepted and ignored. A key whose feature is off,
 * set to something other than its default, is refused naming the switch it
 * waits for (one line each, through `check`); keys that were read nowhere
 * are done: [security.audit] log_level into the main log, and
 * log_authorization for clients refused by the access lists or a ban.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { cli, rawRequest, TestServer, tempDir, waitFor } from '../support/harness.js';

describe('issue 14: a key whose feature is off is refused, not ignored', () => {
  const dir = tempDir();
  // The jail and site root: the workers' user must be able to enter it.
  chmodSync(dir, 0o755);
  const cases: [string, string, RegExp][] = [
    [
      'trusted_proxies without trust_proxy',
      '[security.forwarded]\ntrusted_proxies = ["192.0.2.1"]\n',
      /security\.forwarded\.trusted_proxies: has no effect without security\.forwarded\.trust_proxy = true/,
    ],
    [
      'a rate without rate limiting',
      '[security.rate_limiting]\nrequests_per_second = 5\n',
      /security\.rate_limiting\.requests_per_second: has no effect without security\.rate_limiting\.enabled = true/,
    ],
    [
      'an AppArmor profile without AppArmor',
      '[process.isolation]\napparmor_profile = "other"\n',
      /process\.isolation\.apparmor_profile: has no effect without process\.isolation\.enable_apparmor = true/,
    ],
    ['an HTTP/3 port', '[server.http3]\nport = 8443\n', /server\.http3\.port: has no effect without HTTP\/3/],
    [
      'IDS rules without the IDS',
      '[[security.ids.rules]]\nname = "x"\npattern = "x"\n',
      /security\.ids\.rules: has no effect without security\.ids\.enabled = true/,
    ],
    [
      'audit text format into the JSON main log',
      '[security.audit]\nformat = "text"\n',
      /security\.audit\.format: has no effect without security\.audit\.log_file/,
    ],
    ['ciphers without TLS', '[security]\nciphers = ["TLS_AES_128_GCM_SHA256"]\n', /security\.ciphers: has no effect without \[ssl\]/],
    [
      'metrics port without metrics',
      '[server.metrics]\nport = 9999\n',
      /server\.metrics\.port: has no effect without server\.metrics\.enabled = true/,
    ],
  ];
  for (const [name, body, expected] of cases) {
    it(name, () => {
      const file = path.join(dir, `${name.replace(/\W+/g, '-')}.toml`);
      writeFileSync(file, `${body}[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`);
      const result = cli(['check', '-c', file]);
      assert.equal(result.status, 1, `${name} was accepted`);
      assert.match(result.stderr, expected);
      assert.match(result.stderr, /\(line \d+\)/);
    });
  }

  it('a switch written off keeps its keys for later, as [cluster] enabled = false does', () => {
    const file = path.join(dir, 'kept.toml');
    writeFileSync(
      file,
      `[security.rate_limiting]\nenabled = false\nrequests_per_second = 5\n[process.isolation]\nchroot = "${dir}"\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`,
    );
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 0, result.stderr);
  });

  it('the same value as the default is fine: the reference file states every default', () => {
    const file = path.join(dir, 'defaults.toml');
    writeFileSync(
      file,
      `[security.forwarded]\ntrusted_hops = 2\n[process.isolation]\nchroot = "${dir}"\n[[vhosts]]\ndomains = ["*"]\nroot = "${dir}"\n`,
    );
    assert.equal(cli(['check', '-c', file]).status, 0);
  });
});

describe('issue 14: [security.audit] log_level and log_authorization are read', () => {
  const server = new TestServer();
  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    await server.start(
      `[security.audit]
log_level = "warn"
log_authorization = false

[security.ddos]
blacklist = ["127.0.0.9"]

[[vhosts]]
domains = ["*"]
root = "${server.dir}"`,
      'workers = 1\n',
    );
  });
  after(() => server.stop());

  it('an access refusal is not written with log_authorization = false; other security events are', async () => {
    await new Promise<void>((resolve) => {
      const socket = net.connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.9' });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
    await rawRequest(server.port, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    await waitFor('a security event', () => server.logLines().some((line) => line.audit === 'request.duplicate_host'));
    assert.equal(
      server.logLines().some((line) => line.audit === 'connection.blacklisted'),
      false,
    );
  });

  it('an info event (a reload) is not written with log_level = "warn"', async () => {
    process.kill(server.masterPid(), 'SIGHUP');
    await waitFor('the reload', () => server.logLines().some((line) => line.msg === 'configuration reloaded'));
    await sleep(500);
    assert.equal(
      server.logLines().some((line) => line.audit === 'config.reload'),
      false,
    );
  });
});
