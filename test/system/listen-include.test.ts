/**
 * Several listeners and included site files through the real server (issue
 * 13): listen / listen_tls on 127.0.0.1 and ::1 at once, each answering
 * over curl; sites from include globs served beside the main file's; and
 * `check` through the CLI naming an overlapping address and an included
 * file's problem with that file and line.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, freePort, TestServer } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';

/**
 * curl's status and HTTP version for `url`, with extra arguments ("000 0" when it could not connect). Run
 * without blocking: an upstream in this process must answer meanwhile.
 */
function curl(url: string, ...args: string[]): Promise<string> {
  return new Promise((resolve) =>
    execFile('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', ...args, url], (_error, stdout) => resolve(stdout)),
  );
}

/** A free port on ::1 as well as on 127.0.0.1 (freePort only asks the IPv4 side). */
async function freeDualPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const probe = http.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(port, '::1', () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      return port;
    }
  }
}

describe('listen and listen_tls on 127.0.0.1 and ::1', () => {
  const server = new TestServer();
  let plain = 0;
  let secure = 0;

  before(async () => {
    plain = await freeDualPort();
    secure = await freeDualPort();
    writeFileSync(path.join(server.dir, 'index.html'), 'both families\n');
    const ca = new TestCa(server.dir);
    const site = ca.issue('site', ['site.test'], { ipAddresses: ['127.0.0.1', '::1'] });
    await server.start(
      `[ssl.domains."site.test"]\ncert_file = "${site.cert}"\nkey_file = "${site.key}"\n[[vhosts]]\ndomains = ["*"]\nroot = "${server.dir}"\n`,
      `listen = ["127.0.0.1:${plain}", "[::1]:${plain}"]\nlisten_tls = ["127.0.0.1:${secure}", "[::1]:${secure}"]\n`,
    );
  });
  after(() => server.stop());

  it('each listen entry answers, and nothing is listened on where it is not asked (bind_address + http_port are replaced)', async () => {
    assert.equal(await curl(`http://127.0.0.1:${plain}/`), '200 1.1');
    assert.equal(await curl(`http://[::1]:${plain}/`), '200 1.1');
    // The harness's http_port is in the file too: listen replaced it.
    assert.equal(await curl(`http://127.0.0.1:${server.port}/`, '--max-time', '5'), '000 0');
  });

  it('each listen_tls entry answers over TLS (h2 by ALPN)', async () => {
    const ca = path.join(server.dir, 'ca.pem');
    assert.equal(await curl(`https://site.test:${secure}/`, '--cacert', ca, '--resolve', `site.test:${secure}:127.0.0.1`), '200 2');
    assert.equal(await curl(`https://site.test:${secure}/`, '--cacert', ca, '--resolve', `site.test:${secure}:::1`), '200 2');
  });

  it('status lists every listener', () => {
    const ids = server.status().listeners.map((listener) => listener.id);
    for (const id of [`http 127.0.0.1:${plain}`, `http [::1]:${plain}`, `https 127.0.0.1:${secure}`, `https [::1]:${secure}`])
      assert.ok(ids.includes(id), `${id} in ${ids.join(', ')}`);
  });
});

describe('include = ["sites/*.toml"]', () => {
  const server = new TestServer();
  const upstream = http.createServer((req, res) => res.end(`api saw ${req.headers.host}\n`));

  before(async () => {
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const sites = path.join(server.dir, 'sites');
    mkdirSync(path.join(server.dir, 'www'), { recursive: true });
    writeFileSync(path.join(server.dir, 'www', 'index.html'), 'from an included site\n');
    mkdirSync(sites);
    writeFileSync(path.join(sites, 'a-static.toml'), `[[vhosts]]\ndomains = ["static.test"]\nroot = "${path.join(server.dir, 'www')}"\n`);
    writeFileSync(
      path.join(sites, 'b-api.toml'),
      `[[vhosts]]\ndomains = ["api.test"]\n[vhosts.backend]\ntype = "proxy"\ntarget = "http://127.0.0.1:${(upstream.address() as AddressInfo).port}"\n`,
    );
    await server.start(`[[vhosts]]\ndomains = ["main.test"]\nroot = "${path.join(server.dir, 'www')}"\n`, 'include = ["sites/*.toml"]\n');
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  it("serves the main file's site and every included one", async () => {
    for (const host of ['main.test', 'static.test', 'api.test'])
      assert.equal(await curl(`http://127.0.0.1:${server.port}/`, '-H', `Host: ${host}`), '200 1.1', host);
    assert.equal(await curl(`http://127.0.0.1:${server.port}/`, '-H', 'Host: other.test'), '421 1.1');
  });

  it("check names an included file's problem with that file and line, and a domain claimed twice", () => {
    const bad = path.join(server.dir, 'sites', 'c-bad.toml');
    writeFileSync(bad, '[[vhosts]]\ndomains = ["static.test"]\nroot = "/srv"\nlisting = true\n');
    try {
      const result = cli(['check', '-c', server.configFile]);
      assert.equal(result.status, 1);
      const lines = (result.stderr + result.stdout).trim().split('\n');
      assert.ok(lines.includes(`${bad}: vhosts[0].listing: unknown key (line 4)`), lines.join('\n'));
    } finally {
      writeFileSync(bad, '[[vhosts]]\ndomains = ["static.test"]\nroot = "/srv"\n');
    }
    const result = cli(['check', '-c', server.configFile]);
    assert.equal(result.status, 1);
    assert.match(
      result.stderr + result.stdout,
      new RegExp(
        `${bad.replace(/\./g, '\\.')}: vhosts\\[0\\]\\.domains\\[0\\]: "static\\.test" is already claimed by vhosts\\[0\\] of .*a-static\\.toml`,
      ),
    );
  });

  it('check names overlapping listen addresses', () => {
    const file = path.join(server.dir, 'overlap.toml');
    writeFileSync(file, `[server]\nlisten = ["0.0.0.0:8080", "127.0.0.1:8080"]\n[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n`);
    const result = cli(['check', '-c', file]);
    assert.equal(result.status, 1);
    assert.match(
      result.stderr + result.stdout,
      /server\.listen\[1\]: 127\.0\.0\.1:8080 overlaps 0\.0\.0\.0:8080 \(server\.listen\[0\]\): .* \(line 2\)/,
    );
  });
});
