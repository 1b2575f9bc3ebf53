// Over 400 lines: one server with every everyday feature (issue 13), driven by real clients (curl, htpasswd -B, goaccess); one before/after.
/**
 * Everyday serving through the real server (regression tests of issue 13):
 * routes per path, try_files, error pages, compression (curl, and zlib to
 * read what came back), Basic authentication against a file `htpasswd -B`
 * wrote, access lists per route, the access log file read by goaccess, and
 * the MIME table. Every limit gets its bad input: a traversal, an encoded
 * slash, a wrong password, a malformed Authorization, a huge
 * Accept-Encoding; refusals are checked in the audit log.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from 'node:zlib';
import { freePort, rawRequest, readText, ROOT, TestServer, waitFor } from '../support/harness.js';
import { TestCa } from '../support/test-ca.js';

interface CurlAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The head's field lines as sent, in order (repeated fields each on its own line). */
  lines: string[];
}

/** One request with curl; headers lower-cased (the last value of a repeated one). */
function curl(port: number, urlPath: string, args: string[] = [], host = 'site.test'): CurlAnswer {
  const result = spawnSync(
    'curl',
    ['-s', '-D', '-', '--path-as-is', '-H', `Host: ${host}`, ...args, `http://127.0.0.1:${port}${urlPath}`],
    {
      maxBuffer: 64 * 1024 * 1024,
      timeout: 30_000,
    },
  );
  const output = result.stdout;
  const split = output.indexOf('\r\n\r\n');
  const head = output.subarray(0, split).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(head[0]?.split(' ')[1]), headers, lines: head.slice(1), body: output.subarray(split + 4) };
}

/**
 * An upstream that answers by path: text, already encoded, no-transform, an
 * ETag, and the path it saw. A process of its own: curl runs synchronously
 * in this one.
 */
const BIG_LINES = 100_000;
const UPSTREAM = `
const BIG_LINES = ${BIG_LINES};
const http = require('node:http');
const text = 'upstream says hello\\n'.repeat(200);
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/api/encoded')) {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
    res.end('not really gzip');
  } else if (req.url.startsWith('/api/no-transform')) {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-transform' });
    res.end(text);
  } else if (req.url.startsWith('/api/big')) {
    // Poorly compressible text in many writes: the encoder's backpressure is exercised.
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    let i = 0;
    const more = () => {
      while (i < BIG_LINES) {
        const ok = res.write(require('node:crypto').createHash('sha256').update(String(i++)).digest('base64') + '\\n');
        if (!ok) return res.once('drain', more);
      }
      res.end();
    };
    more();
  } else if (req.url.startsWith('/api/varies')) {
    // Fields of its own: a Vary to extend, a frame policy that wins over the server's, a image type that is never compressed.
    const image = req.url.endsWith('.png');
    res.writeHead(200, [
      'Content-Type', image ? 'image/png' : 'text/plain',
      'Vary', 'Origin',
      'X-Frame-Options', 'SAMEORIGIN',
      'Set-Cookie', 'a=1',
      'Set-Cookie', 'b=2',
    ]);
    res.end(text);
  } else if (req.url.startsWith('/api/etag')) {
    if (req.headers['if-none-match'] === '"v1"' || req.headers['if-none-match'] === 'W/"v1"') {
      res.writeHead(304, { ETag: '"v1"' });
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', ETag: '"v1"' });
    res.end(JSON.stringify({ text }));
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Seen-Path': req.url });
    res.end(text);
  }
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

async function upstream(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', UPSTREAM], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) =>
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
  );
  return { child, port };
}

describe('everyday serving (issue 13)', () => {
  const server = new TestServer();
  const www = path.join(server.dir, 'www');
  const docs = path.join(server.dir, 'docs');
  const htpasswd = path.join(server.dir, 'htpasswd');
  const accessLog = path.join(server.dir, 'logs', 'access.log');
  let api: Awaited<ReturnType<typeof upstream>>;
  const big = 'body { color: red; }\n'.repeat(20_000); // 420 KB: streamed, not held in memory
  const css = 'p { margin: 0 }\n'.repeat(200);

  before(async () => {
    mkdirSync(path.join(www, 'assets'), { recursive: true });
    mkdirSync(path.join(www, 'admin'), { recursive: true });
    mkdirSync(path.join(docs, 'guide'), { recursive: true });
    writeFileSync(path.join(www, 'index.html'), `<!doctype html><title>spa</title>${'<p>shell</p>'.repeat(200)}`);
    writeFileSync(path.join(www, '404.html'), '<h1>custom not found</h1>');
    writeFileSync(path.join(www, '50x.html'), `<h1>custom upstream error</h1>${'<!-- padding -->'.repeat(100)}`);
    writeFileSync(path.join(www, 'assets', 'app.css'), css);
    writeFileSync(path.join(www, 'assets', 'big.css'), big);
    writeFileSync(path.join(www, 'assets', 'small.txt'), 'tiny\n');
    writeFileSync(path.join(www, 'assets', 'pre.js'), 'console.log("original");\n'.repeat(100));
    // A precompressed sibling with different (recognisable) content, made after the file.
    writeFileSync(path.join(www, 'assets', 'pre.js.gz'), execFileSync('gzip', ['-c'], { input: 'console.log("from the sibling");\n' }));
    writeFileSync(path.join(www, 'assets', 'stale.js'), 'console.log("fresh");\n'.repeat(100));
    writeFileSync(path.join(www, 'assets', 'stale.js.gz'), execFileSync('gzip', ['-c'], { input: 'console.log("stale");\n' }));
    const past = new Date(Date.now() - 3600_000);
    utimesSync(path.join(www, 'assets', 'stale.js.gz'), past, past);
    for (const ext of ['m3u8', 'wasm', 'avif', 'jxl', 'glb']) writeFileSync(path.join(www, 'assets', `file.${ext}`), 'x');
    writeFileSync(path.join(www, 'admin', 'index.html'), 'admin area\n');
    writeFileSync(path.join(docs, 'guide', 'intro.html'), 'the guide\n');
    // The file as the operator makes it; root-only, as it should be.
    execFileSync('htpasswd', ['-cbB', htpasswd, 'alice', 'correct horse:battery']);
    chmodSync(htpasswd, 0o600);
    api = await upstream();
    await server.start(
      `[[vhosts]]
domains = ["site.test"]
root = "${www}"
try_files = ["$uri", "$uri/", "/index.html"]
error_pages = { 404 = "/404.html", 502 = "/50x.html", 403 = "/missing-page.html" }
[vhosts.compression]
precompressed = true
algorithms = ["br", "zstd", "gzip"]

[[vhosts.routes]]
path = "/api/"
[vhosts.routes.backend]
type = "proxy"
target = "http://127.0.0.1:${api.port}"

[[vhosts.routes]]
path = "/api/secret/"
[vhosts.routes.compression]
enabled = false
[vhosts.routes.backend]
type = "proxy"
target = "http://127.0.0.1:${api.port}"

[[vhosts.routes]]
path = "/down/"
[vhosts.routes.backend]
type = "proxy"
target = "http://127.0.0.1:1"

[[vhosts.routes]]
path = "/docs"
root = "${docs}"
strip_prefix = true

[[vhosts.routes]]
path = "/admin/"
[vhosts.routes.auth]
htpasswd = "${htpasswd}"
realm = "staff only"

[[vhosts.routes]]
path = "/internal/"
[vhosts.routes.access]
allow = ["127.0.0.1/32"]

[[vhosts.routes]]
path = "/internal/closed/"
[vhosts.routes.access]
deny = ["127.0.0.0/8"]

[security.ddos]
ban_after_breaches = 5
ban_seconds = 60
# The guesser is a loopback address, which is never banned by default.
ignore_ip = []
`,
      `access_log_file = "${accessLog}"\nworkers = 1`,
    );
  });
  after(async () => {
    await server.stop();
    api.child.kill();
  });

  const audits = (event: string): Record<string, unknown>[] => server.logLines().filter((line) => line.audit === event);

  describe('routes', () => {
    it('the longest matching prefix wins; the vhost answers the rest', () => {
      assert.equal(curl(server.port, '/api/users').headers['x-seen-path'], '/api/users');
      assert.equal(curl(server.port, '/api/secret/x').headers['x-seen-path'], '/api/secret/x');
      assert.match(curl(server.port, '/assets/app.css').body.toString(), /margin/);
    });

    it('matches at segment boundaries: /apix is not /api/, /api goes to /api/', () => {
      const apix = curl(server.port, '/apix');
      assert.equal(apix.headers['x-seen-path'], undefined);
      assert.match(apix.body.toString(), /shell/, 'the SPA shell (try_files), not the upstream');
      const bare = curl(server.port, '/api?q=1');
      assert.equal(bare.status, 301);
      assert.equal(bare.headers.location, '/api/?q=1');
    });

    it('compares the decoded path with slashes merged: no detour around a route', () => {
      assert.equal(curl(server.port, '/%61pi/users').headers['x-seen-path'], '/%61pi/users');
      assert.equal(curl(server.port, '//admin/').status, 401, '"//admin/" is still the protected route');
      assert.equal(curl(server.port, '/%61dmin/').status, 401, '"/%61dmin/" is still the protected route');
    });

    it('refuses a path that could mean another route (400, audited)', async () => {
      for (const bad of ['/public/../admin/', '/%2e%2e/admin/', '/api%2fsecret/x', '/api/..%2f..%2fetc/passwd']) {
        assert.equal(curl(server.port, bad).status, 400, bad);
      }
      await waitFor('bad_path audit', () => audits('request.bad_path').find((line) => line.path === '/public/../admin/') ?? null);
    });

    it('strip_prefix: the route root serves the path without the prefix', () => {
      assert.equal(curl(server.port, '/docs/guide/intro.html').body.toString(), 'the guide\n');
      assert.equal(curl(server.port, '/docsx/guide/intro.html').status, 200, '/docsx is not /docs: the SPA shell answers');
      assert.match(curl(server.port, '/docsx/guide/intro.html').body.toString(), /shell/);
    });
  });

  describe('try_files and error pages', () => {
    it('serves the SPA shell for a client-side route, a file when it exists', () => {
      const deep = curl(server.port, '/app/settings/profile');
      assert.equal(deep.status, 200);
      assert.match(deep.body.toString(), /<title>spa<\/title>/);
      assert.match(curl(server.port, '/assets/app.css').headers['content-type'] ?? '', /^text\/css/);
    });

    it('never serves a dotfile through try_files', () => {
      writeFileSync(path.join(www, '.env'), 'SECRET=1\n');
      const answer = curl(server.port, '/.env');
      assert.ok(!answer.body.toString().includes('SECRET'));
    });

    it('keeps the status and serves the custom page; the catalogue page when it is missing', () => {
      const notFound = curl(server.port, '/docs/missing.html');
      assert.equal(notFound.status, 404);
      assert.equal(notFound.body.toString(), '404 Not Found\n', 'the docs root has no 404.html: catalogue page');
      const bad = curl(server.port, '/down/x');
      assert.equal(bad.status, 502);
      assert.ok(bad.body.toString().startsWith('<h1>custom upstream error</h1>'));
      // On a proxy route the page is compressed like any answer there: its bytes and its head agree.
      const coded = curl(server.port, '/down/x', ['-H', 'Accept-Encoding: br']);
      assert.equal(coded.status, 502);
      assert.equal(coded.headers['content-encoding'], 'br');
      assert.equal(brotliDecompressSync(coded.body).toString(), bad.body.toString());
      assert.match(bad.headers['content-type'] ?? '', /^text\/html/);
      const denied = curl(server.port, '/internal/closed/x');
      assert.equal(denied.status, 403);
      assert.equal(denied.body.toString(), '403 Forbidden\n', 'the page named for 403 does not exist');
    });
  });

  describe('compression', () => {
    it('the client q-values win over the server preference', () => {
      const gzip = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: br;q=0.5, gzip']);
      assert.equal(gzip.headers['content-encoding'], 'gzip');
      assert.equal(gunzipSync(gzip.body).toString(), css);
      const tie = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: gzip, zstd, br']);
      assert.equal(tie.headers['content-encoding'], 'br', 'a tie goes to the server order');
      assert.equal(brotliDecompressSync(tie.body).toString(), css);
      const zstd = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: zstd, br;q=0']);
      assert.equal(zstd.headers['content-encoding'], 'zstd');
      assert.equal(zstdDecompressSync(zstd.body).toString(), css);
      assert.equal(curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: identity']).headers['content-encoding'], undefined);
    });

    it('curl --compressed reads what it gets', () => {
      const result = spawnSync('curl', ['-s', '--compressed', '-H', 'Host: site.test', `http://127.0.0.1:${server.port}/assets/big.css`], {
        maxBuffer: 8 * 1024 * 1024,
      });
      assert.equal(result.stdout.toString(), big);
    });

    it('Vary on every answer that could differ, an ETag per coding, 304 for the coded one', () => {
      const plain = curl(server.port, '/assets/app.css');
      const br = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: br']);
      assert.equal(plain.headers.vary, 'Accept-Encoding');
      assert.equal(br.headers.vary, 'Accept-Encoding');
      assert.notEqual(plain.headers.etag, br.headers.etag);
      const again = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: br', '-H', `If-None-Match: ${br.headers.etag}`]);
      assert.equal(again.status, 304);
      assert.equal(again.headers.vary, 'Accept-Encoding');
      const other = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: gzip', '-H', `If-None-Match: ${br.headers.etag}`]);
      assert.equal(other.status, 200, 'the br tag does not validate the gzip form');
    });

    it('streams a large file compressed, without a Content-Length', () => {
      const answer = curl(server.port, '/assets/big.css', ['-H', 'Accept-Encoding: gzip']);
      assert.equal(answer.headers['content-encoding'], 'gzip');
      assert.equal(answer.headers['content-length'], undefined);
      assert.equal(gunzipSync(answer.body).toString(), big);
    });

    it('never compresses a range, a small file, or a type that gains nothing', () => {
      const range = curl(server.port, '/assets/app.css', ['-H', 'Accept-Encoding: br', '-H', 'Range: bytes=0-9']);
      assert.equal(range.status, 206);
      assert.equal(range.headers['content-encoding'], undefined);
      assert.equal(range.body.toString(), css.slice(0, 10));
      assert.equal(curl(server.port, '/assets/small.txt', ['-H', 'Accept-Encoding: br']).headers['content-encoding'], undefined);
      const image = curl(server.port, '/assets/file.avif', ['-H', 'Accept-Encoding: br']);
      assert.equal(image.headers['content-encoding'], undefined);
      assert.equal(image.headers.vary, undefined);
    });

    it('a huge or malformed Accept-Encoding costs nothing and gets identity', () => {
      const junk = `${'x;q=abc, '.repeat(400)}br`;
      const answer = curl(server.port, '/assets/app.css', ['-H', `Accept-Encoding: ${junk}`]);
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['content-encoding'], undefined, 'elements past the first 1024 characters are not read');
      assert.equal(answer.body.toString(), css);
      assert.equal(curl(server.port, '/assets/app.css', ['-H', `Accept-Encoding: ${'gzip,'.repeat(2000)}`]).status, 431);
    });

    it('serves a fresh precompressed sibling, never a stale one', () => {
      const fresh = curl(server.port, '/assets/pre.js', ['-H', 'Accept-Encoding: gzip']);
      assert.equal(fresh.headers['content-encoding'], 'gzip');
      assert.equal(gunzipSync(fresh.body).toString(), 'console.log("from the sibling");\n');
      assert.match(fresh.headers['content-type'] ?? '', /^text\/javascript/);
      const stale = curl(server.port, '/assets/stale.js', ['-H', 'Accept-Encoding: gzip']);
      assert.equal(gunzipSync(stale.body).toString(), 'console.log("fresh");\n'.repeat(100));
    });

    it('compresses proxied text, leaves encoded and no-transform answers alone, and honours a route that turns it off', () => {
      const text = curl(server.port, '/api/hello', ['-H', 'Accept-Encoding: br']);
      assert.equal(text.headers['content-encoding'], 'br');
      assert.equal(text.headers.vary, 'Accept-Encoding');
      assert.match(brotliDecompressSync(text.body).toString(), /^upstream says hello/);
      const encoded = curl(server.port, '/api/encoded', ['-H', 'Accept-Encoding: br']);
      assert.equal(encoded.headers['content-encoding'], 'gzip');
      assert.equal(encoded.body.toString(), 'not really gzip');
      assert.equal(curl(server.port, '/api/no-transform', ['-H', 'Accept-Encoding: br']).headers['content-encoding'], undefined);
      const off = curl(server.port, '/api/secret/token', ['-H', 'Accept-Encoding: br, gzip']);
      assert.equal(off.headers['content-encoding'], undefined, 'compression.enabled = false (BREACH)');
      assert.match(off.body.toString(), /^upstream says hello/);
    });

    it('a proxied answer to a client that takes no coding: as sent, with Vary, the upstream fields over the server policy', () => {
      // HEAD: -o /dev/null, or curl prints the head a second time as the body.
      for (const args of [[], ['-H', 'Accept-Encoding: identity'], ['-I', '-o', '/dev/null']]) {
        const plain = curl(server.port, '/api/varies', args);
        assert.equal(plain.status, 200);
        assert.equal(plain.headers['content-encoding'], undefined);
        assert.equal(plain.headers.vary, 'Origin, Accept-Encoding', 'the upstream Vary, extended once');
        assert.equal(plain.headers['x-frame-options'], 'SAMEORIGIN', "the upstream's own field wins");
        assert.equal(plain.headers['x-content-type-options'], 'nosniff', 'the server policy fills in the rest');
        assert.deepEqual(
          plain.lines.filter((line) => /^set-cookie:/i.test(line)).map((line) => line.slice(line.indexOf(':') + 1).trim()),
          ['a=1', 'b=2'],
          'repeated fields stay apart',
        );
        if (args[0] !== '-I') assert.equal(plain.body.toString(), 'upstream says hello\n'.repeat(200));
      }
      const image = curl(server.port, '/api/varies.png');
      assert.equal(image.headers.vary, 'Origin', 'a type never compressed gets no Vary: Accept-Encoding');
      const coded = curl(server.port, '/api/varies', ['-H', 'Accept-Encoding: br']);
      assert.equal(coded.headers['content-encoding'], 'br');
      assert.equal(coded.headers.vary, 'Origin, Accept-Encoding');
      assert.equal(coded.headers['x-frame-options'], 'SAMEORIGIN');
    });

    it('streams a large proxied answer through the encoder to a slow reader, whole', () => {
      let expected = '';
      for (let i = 0; i < BIG_LINES; i++) expected += `${createHash('sha256').update(String(i)).digest('base64')}\n`;
      for (const coding of ['br', 'zstd', 'gzip']) {
        const answer = curl(server.port, '/api/big', ['-H', `Accept-Encoding: ${coding}`, '--limit-rate', '8M']);
        assert.equal(answer.headers['content-encoding'], coding);
        const decoded = (coding === 'br' ? brotliDecompressSync : coding === 'gzip' ? gunzipSync : zstdDecompressSync)(answer.body);
        assert.equal(decoded.length, expected.length, coding);
        assert.ok(decoded.toString() === expected, coding);
      }
    });

    it('a proxied ETag gets the coding suffix, and the upstream still answers 304', () => {
      const first = curl(server.port, '/api/etag', ['-H', 'Accept-Encoding: gzip']);
      assert.equal(first.headers.etag, 'W/"v1-gz"');
      const again = curl(server.port, '/api/etag', ['-H', 'Accept-Encoding: gzip', '-H', 'If-None-Match: W/"v1-gz"']);
      assert.equal(again.status, 304);
      assert.equal(again.headers.etag, 'W/"v1-gz"');
    });
  });

  describe('basic authentication', () => {
    it('asks, admits the right password from htpasswd -B, and names the user in the access log', async () => {
      const ask = curl(server.port, '/admin/');
      assert.equal(ask.status, 401);
      assert.equal(ask.headers['www-authenticate'], 'Basic realm="staff only", charset="UTF-8"');
      const ok = curl(server.port, '/admin/', ['-u', 'alice:correct horse:battery']);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.toString(), 'admin area\n');
      await waitFor('the user in the access log', () => readText(accessLog).includes(' - alice ['));
    });

    it('refuses a wrong password, an unknown user and malformed credentials, audited without the password', async () => {
      assert.equal(curl(server.port, '/admin/', ['-u', 'alice:wrong-guess']).status, 401);
      assert.equal(curl(server.port, '/admin/', ['-u', 'mallory:correct horse:battery']).status, 401);
      const malformed = await rawRequest(
        server.port,
        'GET /admin/ HTTP/1.1\r\nHost: site.test\r\nAuthorization: Basic !!!notbase64\r\nConnection: close\r\n\r\n',
      );
      assert.match(malformed, /^HTTP\/1\.1 401 /);
      const noColon = await rawRequest(
        server.port,
        `GET /admin/ HTTP/1.1\r\nHost: site.test\r\nAuthorization: Basic ${Buffer.from('alice').toString('base64')}\r\nConnection: close\r\n\r\n`,
      );
      assert.match(noColon, /^HTTP\/1\.1 401 /);
      const failed = await waitFor('auth.failed events', () => (audits('auth.failed').length >= 1 ? audits('auth.failed') : null));
      assert.equal(failed[0]?.clientIp, '127.0.0.1');
      assert.ok(!server.output.includes('wrong-guess'), 'a password reached the log');
      assert.ok(audits('auth.required').length === 0, 'the first, credential-less request is routine');
    });

    it('a route with only auth serves the vhost root; the vhost itself stays open', () => {
      assert.equal(curl(server.port, '/assets/app.css').status, 200);
    });

    it('counts failures as breaches: a guesser is banned, everyone else is served', async () => {
      const guesser = '127.0.0.9';
      for (let i = 0; i < 8; i++) curl(server.port, '/admin/', ['--interface', guesser, '-u', `alice:guess${i}`]);
      await waitFor(
        'ban of the guesser',
        () => server.logLines().find((line) => line.audit === 'ban.added' && line.clientIp === guesser) ?? null,
      );
      const banned = spawnSync('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--interface',
        guesser,
        '-H',
        'Host: site.test',
        `http://127.0.0.1:${server.port}/`,
      ]);
      assert.notEqual(banned.stdout.toString(), '200');
      assert.equal(curl(server.port, '/admin/', ['-u', 'alice:correct horse:battery']).status, 200);
    });
  });

  describe('access lists per route', () => {
    it('allow admits only the listed addresses (403 for the rest, audited)', async () => {
      assert.equal(curl(server.port, '/internal/page').status, 200, '127.0.0.1 is allowed (the SPA shell)');
      const outsider = spawnSync('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--interface',
        '127.0.0.5',
        '-H',
        'Host: site.test',
        `http://127.0.0.1:${server.port}/internal/page`,
      ]);
      assert.equal(outsider.stdout.toString(), '403');
      await waitFor('access_denied audit', () => audits('request.access_denied').find((line) => line.clientIp === '127.0.0.5') ?? null);
    });

    it('deny wins over everything else', () => {
      assert.equal(curl(server.port, '/internal/closed/x').status, 403);
    });
  });

  describe('MIME types from mime-db', () => {
    for (const [ext, type] of [
      ['m3u8', 'application/vnd.apple.mpegurl'],
      ['wasm', 'application/wasm'],
      ['avif', 'image/avif'],
      ['jxl', 'image/jxl'],
      ['glb', 'model/gltf-binary'],
    ] as const) {
      it(`.${ext} is ${type}`, () => assert.equal(curl(server.port, `/assets/file.${ext}`).headers['content-type'], type));
    }
  });

  describe('access log file', () => {
    it('is 0640, in nginx combined format without query strings, and goaccess reads it', async () => {
      curl(server.port, '/assets/app.css?token=SECRET', ['-A', 'Mozilla/5.0 "quoted"', '-e', 'https://ref.example/']);
      const line = await waitFor(
        'the line',
        () =>
          readText(accessLog)
            .split('\n')
            .find((l) => l.includes('/assets/app.css') && l.includes('ref.example')) ?? null,
      );
      assert.equal(statSync(accessLog).mode & 0o777, 0o640);
      assert.ok(!readText(accessLog).includes('SECRET'), 'a query string reached the access log');
      assert.match(
        line,
        /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/assets\/app\.css HTTP\/1\.1" 200 \d+ "https:\/\/ref\.example\/" "Mozilla\/5\.0 \\x22quoted\\x22"$/,
      );
      const report = JSON.parse(
        execFileSync('goaccess', [accessLog, '--log-format=COMBINED', '-o', 'json', '--no-global-config'], { encoding: 'utf8' }),
      ) as { general: { total_requests: number; failed_requests: number } };
      assert.ok(report.general.total_requests > 10, `goaccess read ${report.general.total_requests} requests`);
      assert.equal(report.general.failed_requests, 0, 'goaccess could not parse some lines');
    });

    it('keeps every line whole under concurrent requests', async () => {
      const before = readText(accessLog).split('\n').length;
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          rawRequest(server.port, `GET /assets/small.txt?n=${i} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n`),
        ),
      );
      const lines = await waitFor('40 more lines', () => {
        const all = readText(accessLog).split('\n');
        return all.length >= before + 40 ? all : null;
      });
      for (const entry of lines.filter((l) => l !== '')) assert.match(entry, /^\S+ - \S+ \[[^\]]+\] "[^"]*" \d{3} \d+ "[^"]*" "[^"]*"$/);
    });

    it('is reopened on SIGUSR1 (logrotate)', async () => {
      renameSync(accessLog, `${accessLog}.1`);
      process.kill(server.masterPid(), 'SIGUSR1');
      await waitFor('a new file', () => {
        curl(server.port, '/after-rotation');
        return readText(accessLog).includes('/after-rotation');
      });
      assert.equal(statSync(accessLog).mode & 0o777, 0o640);
      assert.ok(!readFileSync(`${accessLog}.1`, 'utf8').includes('/after-rotation'));
    });
  });

  describe('raw edge cases', () => {
    it('an absolute-form target is routed by its path', async () => {
      const answer = await rawRequest(server.port, 'GET http://site.test/api/abs HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n');
      assert.match(answer, /x-seen-path: \/api\/abs/i);
    });

    it('a worker keeps serving after every bad input above', async () => {
      const socket = net.connect(server.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.destroy();
      assert.equal(curl(server.port, '/assets/app.css').status, 200);
    });
  });
});

describe('access log file: JSON, queries, and a reload that moves it', () => {
  const server = new TestServer();
  const first = path.join(server.dir, 'logs', 'first.log');
  const second = path.join(server.dir, 'logs', 'second.json');
  const www = path.join(server.dir, 'www');
  const body = `[[vhosts]]\ndomains = ["site.test"]\nroot = "${www}"\n`;

  before(async () => {
    mkdirSync(www, { recursive: true });
    writeFileSync(path.join(www, 'index.html'), 'hello\n');
    await server.start(body, `access_log_file = "${first}"`);
  });
  after(() => server.stop());

  it('writes JSON lines with the query after a reload to another file, and stops writing the first', async () => {
    curl(server.port, '/?before=1');
    await waitFor('a line in the first file', () => readText(first).includes('"GET / HTTP/1.1"'));
    server.writeConfig(body, `access_log_file = "${second}"\naccess_log_format = "json"\naccess_log_query = true`);
    const reload = spawnSync(path.join(ROOT, 'bin/miwidothttp'), ['reload', '-c', server.configFile], { encoding: 'utf8' });
    assert.equal(reload.status, 0, reload.stderr);
    curl(server.port, '/?after=2', ['-u', 'nobody:at-all']);
    const line = await waitFor(
      'a JSON line',
      () =>
        readText(second)
          .split('\n')
          .find((l) => l.includes('after=2')) ?? null,
    );
    const entry = JSON.parse(line) as Record<string, unknown>;
    assert.equal(entry.target, '/?after=2');
    assert.equal(entry.status, 200);
    assert.equal(entry.client_ip, '127.0.0.1');
    assert.equal(entry.user, undefined, 'credentials nobody checked name no user');
    assert.equal(entry.bytes, 6);
    assert.equal(statSync(second).mode & 0o777, 0o640);
    assert.ok(!readText(first).includes('after=2'));
  });
});

describe('over HTTP/2: compression, authentication, error pages and the access log', () => {
  const server = new TestServer();
  const www = path.join(server.dir, 'www');
  const log = path.join(server.dir, 'logs', 'h2.log');
  const htpasswd = path.join(server.dir, 'htpasswd');
  let port = 0;
  const page = 'h2 page\n'.repeat(300);

  before(async () => {
    mkdirSync(www, { recursive: true });
    writeFileSync(path.join(www, 'page.html'), page);
    writeFileSync(path.join(www, '404.html'), 'h2 not found');
    execFileSync('htpasswd', ['-cbB', htpasswd, 'bob', 'h2 secret']);
    const site = new TestCa(server.dir).issue('site', ['site.test']);
    port = await freePort();
    await server.start(
      `[ssl.domains."site.test"]\ncert_file = "${site.cert}"\nkey_file = "${site.key}"\n\n[[vhosts]]\ndomains = ["site.test"]\nroot = "${www}"\nerror_pages = { 404 = "/404.html" }\n[[vhosts.routes]]\npath = "/private/"\n[vhosts.routes.auth]\nhtpasswd = "${htpasswd}"\n`,
      `https_port = ${port}\naccess_log_file = "${log}"\n`,
    );
  });
  after(() => server.stop());

  const h2 = (urlPath: string, args: string[] = []): { code: string; encoding: string; body: Buffer } => {
    const out = path.join(server.dir, 'h2-body');
    const result = spawnSync(
      'curl',
      [
        '-sk',
        '--http2',
        '--resolve',
        `site.test:${port}:127.0.0.1`,
        '-o',
        out,
        '-w',
        '%{http_version} %{http_code} %header{content-encoding}',
        ...args,
        `https://site.test:${port}${urlPath}`,
      ],
      { encoding: 'utf8' },
    );
    const [version, code, encoding] = result.stdout.split(' ');
    assert.equal(version, '2');
    return { code: code ?? '', encoding: encoding ?? '', body: readFileSync(out) };
  };

  it('compresses, asks for a password, serves the error page, and logs body bytes once', async () => {
    const compressed = h2('/page.html', ['-H', 'Accept-Encoding: br']);
    assert.equal(compressed.encoding, 'br');
    assert.equal(brotliDecompressSync(compressed.body).toString(), page);
    assert.equal(h2('/private/').code, '401');
    assert.equal(h2('/private/', ['-u', 'bob:h2 secret']).code, '404', 'admitted; nothing there');
    const missing = h2('/missing');
    assert.equal(missing.code, '404');
    assert.equal(missing.body.toString(), 'h2 not found');
    const line = await waitFor(
      'the h2 line',
      () =>
        readText(log)
          .split('\n')
          .find((l) => l.includes('"GET /missing HTTP/2.0"')) ?? null,
    );
    assert.match(line, /" 404 12 "/, 'the error page is 12 bytes, counted once');
    await waitFor('the user', () => readText(log).includes(' - bob ['));
  });
});

describe('the default jail (no chroot) holds every route root', () => {
  const server = new TestServer();
  const site = path.join(server.dir, 'site');
  const media = path.join(server.dir, 'media');

  before(async () => {
    mkdirSync(site, { recursive: true });
    mkdirSync(media, { recursive: true });
    writeFileSync(path.join(site, 'index.html'), 'site\n');
    writeFileSync(path.join(media, 'clip.m3u8'), '#EXTM3U\n');
    writeFileSync(path.join(media, '404.html'), 'no such clip');
    await server.start(
      `[process.isolation]\n\n[[vhosts]]\ndomains = ["site.test"]\nroot = "${site}"\n[[vhosts.routes]]\npath = "/media/"\nroot = "${media}"\nstrip_prefix = true\nerror_pages = { 404 = "/404.html" }\n`,
    );
  });
  after(() => server.stop());

  it('serves a route root and its error page that lie outside the vhost root', () => {
    const clip = curl(server.port, '/media/clip.m3u8');
    assert.equal(clip.body.toString(), '#EXTM3U\n');
    assert.equal(clip.headers['content-type'], 'application/vnd.apple.mpegurl');
    const missing = curl(server.port, '/media/other.m3u8');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.toString(), 'no such clip');
    assert.equal(curl(server.port, '/').body.toString(), 'site\n');
  });
});
