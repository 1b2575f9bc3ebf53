import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { COMPRESSION_DEFAULTS } from '../../src/config/compile-sites.js';
import type { VhostSpec } from '../../src/config/types.js';
import { createStaticHandler } from '../../src/worker/handlers/static/handler.js';
import type { StaticCacheTuning } from '../../src/worker/handlers/static/cache.js';
import type { RequestContext, RequestHandler } from '../../src/worker/handlers/types.js';

const OUTSIDE_SECRET = 'TOPSECRET-outside-the-root';
const DOTFILE_SECRET = 'DOTSECRET-hidden-inside-the-root';
const HELLO = 'hello world\n';
const INDEX_HTML = '<!doctype html><title>home</title>\n';

interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

interface TestServer {
  readonly port: number;
  readonly notes: { event: string; detail: string | undefined }[];
  readonly handler: RequestHandler;
  close(): Promise<void>;
}

/**
 * One request written byte-for-byte over a socket, so targets reach the
 * server exactly as an attacker would send them (no client normalisation).
 */
function rawRequest(
  port: number,
  target: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const method = options.method ?? 'GET';
  const extra = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const head = `${method} ${target} HTTP/1.1\r\nHost: static.test\r\nConnection: close\r\n${extra}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const raw = Buffer.concat(chunks);
      const split = raw.indexOf('\r\n\r\n');
      if (split === -1) {
        reject(new Error(`no response head: ${JSON.stringify(raw.toString('latin1'))}`));
        return;
      }
      const lines = raw.subarray(0, split).toString('latin1').split('\r\n');
      const status = Number((lines[0] ?? '').split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers, body: raw.subarray(split + 4) });
    });
    socket.write(head, 'latin1');
  });
}

async function startServer(vhost: VhostSpec, tuning: Partial<StaticCacheTuning> = {}): Promise<TestServer> {
  const handler = createStaticHandler(vhost, tuning);
  const notes: { event: string; detail: string | undefined }[] = [];
  const ctx: RequestContext = {
    clientIp: '127.0.0.1',
    protocol: 'http',
    host: 'static.test',
    note(event, detail) {
      notes.push({ event, detail });
    },
  };
  const server = http.createServer((req, res) => handler.handle(req, res, ctx));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    notes,
    handler,
    async close() {
      await handler.close?.();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function vhostFor(root: string, overrides: Partial<VhostSpec> = {}): VhostSpec {
  return {
    domains: ['static.test'],
    root,
    hostRoot: root,
    indexFiles: ['index.html', 'index.htm'],
    responseHeaders: null,
    directoryListing: false,
    backend: { type: 'static' },
    tryFiles: null,
    errorPages: {},
    auth: null,
    access: null,
    compression: COMPRESSION_DEFAULTS,
    routes: [],
    ...overrides,
  };
}

describe('static handler', () => {
  let base: string;
  let root: string;
  let big: Buffer;
  let server: TestServer;
  let listing: TestServer;

  before(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'miwidothttp-static-'));
    root = path.join(base, 'www');
    big = randomBytes(300 * 1024);
    // Outside the root: nothing below may ever return these bytes.
    await fs.writeFile(path.join(base, 'secret'), OUTSIDE_SECRET);
    await fs.mkdir(path.join(base, 'outside-dir'));
    await fs.writeFile(path.join(base, 'outside-dir', 'secret2'), OUTSIDE_SECRET);

    await fs.mkdir(root);
    await fs.writeFile(path.join(root, 'hello.txt'), HELLO);
    await fs.writeFile(path.join(root, 'index.html'), INDEX_HTML);
    await fs.writeFile(path.join(root, 'style.css'), 'body{}');
    await fs.writeFile(path.join(root, 'app.js'), 'export {};');
    await fs.writeFile(path.join(root, 'data.json'), '{}');
    await fs.writeFile(path.join(root, 'IMAGE.PNG'), randomBytes(64));
    await fs.writeFile(path.join(root, 'blob.zzz'), randomBytes(64));
    await fs.writeFile(path.join(root, 'README'), 'no extension');
    await fs.writeFile(path.join(root, 'empty.txt'), '');
    await fs.writeFile(path.join(root, 'big.bin'), big);
    await fs.writeFile(path.join(root, '.env'), DOTFILE_SECRET);
    await fs.mkdir(path.join(root, '.git'));
    await fs.writeFile(path.join(root, '.git', 'config'), DOTFILE_SECRET);
    await fs.mkdir(path.join(root, '.well-known'));
    await fs.writeFile(path.join(root, '.well-known', 'security.txt'), 'Contact: mailto:security@example.test\n');
    await fs.writeFile(path.join(root, '.well-known', '.hidden'), DOTFILE_SECRET);
    await fs.mkdir(path.join(root, 'sub'));
    await fs.writeFile(path.join(root, 'sub', 'index.html'), '<p>sub</p>');
    await fs.writeFile(path.join(root, 'sub', '.hidden'), DOTFILE_SECRET);
    await fs.mkdir(path.join(root, 'evil.com'));
    await fs.writeFile(path.join(root, 'evil.com', 'index.html'), '<p>not a redirect target</p>');
    await fs.mkdir(path.join(root, 'noindex'));
    await fs.mkdir(path.join(root, 'noindex', 'child dir'));
    await fs.writeFile(path.join(root, 'noindex', 'a&b.txt'), 'x');
    await fs.writeFile(path.join(root, 'noindex', '<img src=x onerror=alert(1)>.txt'), 'x');
    await fs.writeFile(path.join(root, 'noindex', 'space name.txt'), 'x');
    await fs.writeFile(path.join(root, 'noindex', '"quoted".txt'), 'x');
    await fs.writeFile(path.join(root, 'noindex', '.hidden-in-listing'), DOTFILE_SECRET);
    await fs.symlink(path.join(base, 'secret'), path.join(root, 'link-out'));
    await fs.symlink(path.join(base, 'outside-dir'), path.join(root, 'linkdir-out'));
    await fs.symlink('../secret', path.join(root, 'relative-link-out'));
    await fs.symlink('hello.txt', path.join(root, 'link-in.txt'));
    await fs.symlink('.env', path.join(root, 'link-to-dotfile.txt'));

    server = await startServer(vhostFor(root));
    listing = await startServer(vhostFor(root, { directoryListing: true }));
  });

  after(async () => {
    await server.close();
    await listing.close();
    await fs.rm(base, { recursive: true, force: true });
  });

  describe('content and metadata', () => {
    it('serves a file with type, length and validators', async () => {
      const res = await rawRequest(server.port, '/hello.txt');
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), HELLO);
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(res.headers['content-length'], String(HELLO.length));
      assert.equal(res.headers['accept-ranges'], 'bytes');
      assert.match(res.headers.etag ?? '', /^W\/"[0-9a-f]+-[0-9a-f]+"$/);
      const stats = await fs.stat(path.join(root, 'hello.txt'));
      assert.equal(res.headers['last-modified'], new Date(Math.floor(stats.mtimeMs / 1000) * 1000).toUTCString());
    });

    const mimeCases: [string, string][] = [
      ['/index.html', 'text/html; charset=utf-8'],
      ['/style.css', 'text/css; charset=utf-8'],
      ['/app.js', 'text/javascript; charset=utf-8'],
      ['/data.json', 'application/json; charset=utf-8'],
      ['/IMAGE.PNG', 'image/png'],
      ['/blob.zzz', 'application/octet-stream'],
      ['/README', 'application/octet-stream'],
      ['/big.bin', 'application/octet-stream'],
    ];
    for (const [target, type] of mimeCases) {
      it(`serves ${target} as ${type}`, async () => {
        const res = await rawRequest(server.port, target);
        assert.equal(res.status, 200);
        assert.equal(res.headers['content-type'], type);
      });
    }

    it('streams a file too large for the cache, byte for byte', async () => {
      const res = await rawRequest(server.port, '/big.bin');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(big.length));
      assert.ok(res.body.equals(big));
    });

    it('survives a client that leaves mid-stream', async () => {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(server.port, '127.0.0.1');
        socket.once('data', () => {
          socket.destroy();
          resolve();
        });
        socket.on('error', reject);
        socket.write('GET /big.bin HTTP/1.1\r\nHost: static.test\r\n\r\n');
      });
      const res = await rawRequest(server.port, '/big.bin');
      assert.equal(res.status, 200);
      assert.ok(res.body.equals(big));
    });

    it('answers HEAD with the GET headers and no body', async () => {
      for (const target of ['/hello.txt', '/big.bin']) {
        const get = await rawRequest(server.port, target);
        const head = await rawRequest(server.port, target, { method: 'HEAD' });
        assert.equal(head.status, 200);
        assert.equal(head.body.length, 0);
        for (const name of ['content-type', 'content-length', 'etag', 'last-modified', 'accept-ranges']) {
          assert.equal(head.headers[name], get.headers[name], name);
        }
      }
    });

    it('serves an empty file', async () => {
      const res = await rawRequest(server.port, '/empty.txt');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], '0');
      assert.equal(res.body.length, 0);
    });

    it('ignores the query string when finding the file', async () => {
      const res = await rawRequest(server.port, '/hello.txt?file=../../secret&x=%2e%2e');
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), HELLO);
    });

    it('accepts the absolute form (RFC 9112 §3.2.2)', async () => {
      const res = await rawRequest(server.port, 'http://static.test/hello.txt');
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), HELLO);
    });

    it('follows a symlink that stays inside the root', async () => {
      const res = await rawRequest(server.port, '/link-in.txt');
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), HELLO);
    });

    it('answers a FIFO with 404 instead of hanging on it', async () => {
      execFileSync('mkfifo', [path.join(root, 'pipe.txt')]);
      const res = await rawRequest(server.port, '/pipe.txt');
      assert.equal(res.status, 404);
    });
  });

  describe('methods', () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      it(`refuses ${method} with 405 and Allow`, async () => {
        const res = await rawRequest(server.port, '/hello.txt', { method, headers: { 'Content-Length': '0' } });
        assert.equal(res.status, 405);
        assert.equal(res.headers.allow, 'GET, HEAD');
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.equal(server.notes.at(-1)?.event, 'request.method_not_allowed');
      });
    }
  });

  describe('conditional requests (RFC 9110 §13)', () => {
    async function validators(target: string): Promise<{ etag: string; lastModified: string }> {
      const res = await rawRequest(server.port, target);
      return { etag: res.headers.etag ?? '', lastModified: res.headers['last-modified'] ?? '' };
    }

    it('answers a matching If-None-Match with 304 and the ETag', async () => {
      for (const target of ['/hello.txt', '/big.bin']) {
        const { etag } = await validators(target);
        const res = await rawRequest(server.port, target, { headers: { 'If-None-Match': etag } });
        assert.equal(res.status, 304);
        assert.equal(res.headers.etag, etag);
        assert.equal(res.body.length, 0);
      }
    });

    it('matches If-None-Match weakly, in a list, and "*"', async () => {
      const { etag } = await validators('/hello.txt');
      const strongForm = etag.slice(2);
      for (const value of [`"nope", ${etag}`, strongForm, `W/"a,b", ${strongForm}`, '*']) {
        const res = await rawRequest(server.port, '/hello.txt', { headers: { 'If-None-Match': value } });
        assert.equal(res.status, 304, value);
      }
      const miss = await rawRequest(server.port, '/hello.txt', { headers: { 'If-None-Match': 'W/"0-0"' } });
      assert.equal(miss.status, 200);
    });

    it('answers If-Modified-Since at or after Last-Modified with 304', async () => {
      const { lastModified } = await validators('/hello.txt');
      const exact = await rawRequest(server.port, '/hello.txt', { headers: { 'If-Modified-Since': lastModified } });
      assert.equal(exact.status, 304);
      const later = new Date(Date.parse(lastModified) + 60_000).toUTCString();
      const after = await rawRequest(server.port, '/hello.txt', { headers: { 'If-Modified-Since': later } });
      assert.equal(after.status, 304);
    });

    it('accepts the obsolete date forms (RFC 9110 §5.6.7)', async () => {
      const farFuture = [`Sunday, 06-Nov-44 08:49:37 GMT`, `Sun Nov  6 08:49:37 2044`];
      for (const date of farFuture) {
        const res = await rawRequest(server.port, '/hello.txt', { headers: { 'If-Modified-Since': date } });
        assert.equal(res.status, 304, date);
      }
    });

    it('sends the body when modified since, or when the date is invalid', async () => {
      for (const date of ['Sun, 06 Nov 1994 08:49:37 GMT', 'yesterday', '2999-01-01', 'Sun, 31 Feb 2999 00:00:00 GMT']) {
        const res = await rawRequest(server.port, '/hello.txt', { headers: { 'If-Modified-Since': date } });
        assert.equal(res.status, 200, date);
        assert.equal(res.body.toString(), HELLO);
      }
    });

    it('lets If-None-Match take precedence over If-Modified-Since (§13.2.2)', async () => {
      const { lastModified } = await validators('/hello.txt');
      const res = await rawRequest(server.port, '/hello.txt', {
        headers: { 'If-None-Match': 'W/"stale-tag"', 'If-Modified-Since': lastModified },
      });
      assert.equal(res.status, 200);
    });
  });

  describe('ranges (RFC 9110 §14)', () => {
    const size = HELLO.length;
    const rangeCases: { range: string; status: number; body?: string; contentRange?: string }[] = [
      { range: 'bytes=0-4', status: 206, body: 'hello', contentRange: `bytes 0-4/${size}` },
      { range: 'bytes=6-', status: 206, body: 'world\n', contentRange: `bytes 6-${size - 1}/${size}` },
      { range: 'bytes=-6', status: 206, body: 'world\n', contentRange: `bytes 6-${size - 1}/${size}` },
      { range: 'bytes=-1000', status: 206, body: HELLO, contentRange: `bytes 0-${size - 1}/${size}` },
      { range: 'bytes=6-1000', status: 206, body: 'world\n', contentRange: `bytes 6-${size - 1}/${size}` },
      { range: 'Bytes=0-0', status: 206, body: 'h', contentRange: `bytes 0-0/${size}` },
      { range: 'bytes=0-4,', status: 206, body: 'hello', contentRange: `bytes 0-4/${size}` },
      { range: `bytes=${size}-`, status: 416, contentRange: `bytes */${size}` },
      { range: 'bytes=1000-2000', status: 416, contentRange: `bytes */${size}` },
      { range: 'bytes=-0', status: 416, contentRange: `bytes */${size}` },
      { range: 'bytes=0-1,3-4', status: 200, body: HELLO },
      { range: 'bytes=5-2', status: 200, body: HELLO },
      { range: 'bytes=a-b', status: 200, body: HELLO },
      { range: 'bytes=--1', status: 200, body: HELLO },
      { range: 'bytes=99999999999999999999-', status: 200, body: HELLO },
      { range: 'items=0-1', status: 200, body: HELLO },
    ];
    for (const c of rangeCases) {
      it(`Range: ${c.range} -> ${c.status}`, async () => {
        const res = await rawRequest(server.port, '/hello.txt', { headers: { Range: c.range } });
        assert.equal(res.status, c.status);
        if (c.body !== undefined) assert.equal(res.body.toString(), c.body);
        assert.equal(res.headers['content-range'], c.contentRange);
        if (c.status === 416) assert.equal(server.notes.at(-1)?.event, 'request.bad_range');
      });
    }

    it('answers any range on an empty file with 416', async () => {
      const res = await rawRequest(server.port, '/empty.txt', { headers: { Range: 'bytes=0-' } });
      assert.equal(res.status, 416);
      assert.equal(res.headers['content-range'], 'bytes */0');
    });

    it('ignores Range on HEAD', async () => {
      const res = await rawRequest(server.port, '/hello.txt', { method: 'HEAD', headers: { Range: 'bytes=0-4' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(size));
    });

    it('streams a range of a large file', async () => {
      const mid = await rawRequest(server.port, '/big.bin', { headers: { Range: 'bytes=100000-200000' } });
      assert.equal(mid.status, 206);
      assert.equal(mid.headers['content-range'], `bytes 100000-200000/${big.length}`);
      assert.ok(mid.body.equals(big.subarray(100000, 200001)));
      const tail = await rawRequest(server.port, '/big.bin', { headers: { Range: 'bytes=-10' } });
      assert.equal(tail.status, 206);
      assert.ok(tail.body.equals(big.subarray(big.length - 10)));
      const beyond = await rawRequest(server.port, '/big.bin', { headers: { Range: `bytes=${big.length}-` } });
      assert.equal(beyond.status, 416);
      assert.equal(beyond.headers['content-range'], `bytes */${big.length}`);
    });

    it('honours If-Range with the current Last-Modified only', async () => {
      const plain = await rawRequest(server.port, '/hello.txt');
      const lastModified = plain.headers['last-modified'] ?? '';
      const same = await rawRequest(server.port, '/hello.txt', { headers: { Range: 'bytes=0-4', 'If-Range': lastModified } });
      assert.equal(same.status, 206);
      const old = await rawRequest(server.port, '/hello.txt', {
        headers: { Range: 'bytes=0-4', 'If-Range': 'Sun, 06 Nov 1994 08:49:37 GMT' },
      });
      assert.equal(old.status, 200);
      assert.equal(old.body.toString(), HELLO);
      // Our entity tags are weak; If-Range needs a strong match (§13.1.5).
      const tagged = await rawRequest(server.port, '/hello.txt', {
        headers: { Range: 'bytes=0-4', 'If-Range': plain.headers.etag ?? '' },
      });
      assert.equal(tagged.status, 200);
    });
  });

  describe('directories', () => {
    it('serves the index file of the root and of a subdirectory', async () => {
      const home = await rawRequest(server.port, '/');
      assert.equal(home.status, 200);
      assert.equal(home.body.toString(), INDEX_HTML);
      assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
      const sub = await rawRequest(server.port, '/sub/');
      assert.equal(sub.status, 200);
      assert.equal(sub.body.toString(), '<p>sub</p>');
    });

    it('redirects a directory without its slash, keeping the query', async () => {
      const res = await rawRequest(server.port, '/sub');
      assert.equal(res.status, 301);
      assert.equal(res.headers.location, '/sub/');
      const withQuery = await rawRequest(server.port, '/sub?a=1&b=%2F');
      assert.equal(withQuery.status, 301);
      assert.equal(withQuery.headers.location, '/sub/?a=1&b=%2F');
    });

    it('never redirects to a scheme-relative Location', async () => {
      const res = await rawRequest(server.port, '//evil.com');
      assert.equal(res.status, 301);
      assert.equal(res.headers.location, '/evil.com/');
    });

    it('does not list a directory without an index by default', async () => {
      const res = await rawRequest(server.port, '/noindex/');
      assert.equal(res.status, 404);
      assert.equal(server.notes.at(-1)?.event, 'request.not_found');
    });

    it('lists a directory when enabled, escaped and without dotfiles', async () => {
      const res = await rawRequest(listing.port, '/noindex/');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(res.headers['content-security-policy'], "default-src 'none'");
      const page = res.body.toString();
      assert.ok(!page.includes('<img'), 'raw markup from a file name');
      assert.ok(page.includes('&lt;img src=x onerror=alert(1)&gt;.txt'));
      assert.ok(page.includes('href="%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E.txt"'));
      assert.ok(page.includes('href="a%26b.txt">a&amp;b.txt<'));
      assert.ok(page.includes('href="space%20name.txt"'));
      assert.ok(page.includes('href="%22quoted%22.txt">&quot;quoted&quot;.txt<'));
      assert.ok(page.includes('href="child%20dir/">child dir/<'));
      assert.ok(!page.includes('hidden-in-listing'));
      assert.ok(!page.includes(DOTFILE_SECRET));
    });

    it('still prefers the index file when listing is enabled', async () => {
      const res = await rawRequest(listing.port, '/sub/');
      assert.equal(res.body.toString(), '<p>sub</p>');
    });

    it('answers HEAD on a listing without a body', async () => {
      const res = await rawRequest(listing.port, '/noindex/', { method: 'HEAD' });
      assert.equal(res.status, 200);
      assert.equal(res.body.length, 0);
      assert.ok(Number(res.headers['content-length']) > 0);
    });
  });

  describe('dotfiles', () => {
    for (const target of [
      '/.env',
      '/%2eenv',
      '/.git/config',
      '/.git/',
      '/sub/.hidden',
      '/.well-known/.hidden',
      '/link-to-dotfile.txt',
      '/...',
    ]) {
      it(`hides ${target} as 404`, async () => {
        const res = await rawRequest(server.port, target);
        assert.equal(res.status, 404);
        assert.ok(!res.body.toString().includes(DOTFILE_SECRET));
      });
    }

    it('serves /.well-known/ (RFC 8615)', async () => {
      const res = await rawRequest(server.port, '/.well-known/security.txt');
      assert.equal(res.status, 200);
      assert.match(res.body.toString(), /^Contact:/);
    });
  });

  describe('traversal', () => {
    // Every target must be refused, and none may ever yield a secret.
    const attempts: { target: string; status: 400 | 404 }[] = [
      { target: '/../secret', status: 400 },
      { target: '/..', status: 400 },
      { target: '/%2e%2e/secret', status: 400 },
      { target: '/%2E%2E/secret', status: 400 },
      { target: '/.%2e/secret', status: 400 },
      { target: '/%2e./secret', status: 400 },
      { target: '/%2e', status: 400 },
      { target: '/%2e%2e%2fsecret', status: 400 },
      { target: '/..%2fsecret', status: 400 },
      { target: '/..%2Fsecret', status: 400 },
      { target: '/%2e%2e%5csecret', status: 400 },
      { target: '/%252e%252e/secret', status: 400 },
      { target: '/%252e%252e%252fsecret', status: 400 },
      { target: '/..%252fsecret', status: 400 },
      { target: '/..\\secret', status: 400 },
      { target: '/sub\\..\\..\\secret', status: 400 },
      { target: '/%5c..%5csecret', status: 400 },
      { target: '/a/%00.html', status: 400 },
      { target: '/hello.txt%00', status: 400 },
      { target: '/hello.txt%00.html', status: 400 },
      { target: '/%0d%0aSet-Cookie:x=1', status: 400 },
      { target: '/%7f', status: 400 },
      { target: '/%c2%85', status: 400 },
      { target: '/%c0%ae%c0%ae/secret', status: 400 },
      { target: '/%c0%af', status: 400 },
      { target: '/..%c0%af..%c0%afsecret', status: 400 },
      { target: '/%e0%80%ae%e0%80%ae/secret', status: 400 },
      { target: '/%u002e%u002e/secret', status: 400 },
      { target: '/%', status: 400 },
      { target: '/%zz', status: 400 },
      { target: '/%e2%82', status: 400 },
      { target: '//../secret', status: 400 },
      { target: '/./../secret', status: 400 },
      { target: '/./hello.txt', status: 400 },
      { target: '/sub/../../secret', status: 400 },
      { target: '/.well-known/../../secret', status: 400 },
      { target: '/hello.txt/..', status: 400 },
      { target: '/hello.txt#/../secret', status: 400 },
      { target: 'http://static.test/../secret', status: 400 },
      { target: 'http://static.test/%2e%2e/secret', status: 400 },
      { target: 'secret', status: 400 },
      { target: '/hello.txt/', status: 404 },
      { target: '/..;/secret', status: 404 },
      { target: '/%ef%bc%8e%ef%bc%8e/secret', status: 404 },
      { target: '/link-out', status: 404 },
      { target: '/relative-link-out', status: 404 },
      { target: '/linkdir-out/secret2', status: 404 },
      { target: '/linkdir-out/', status: 404 },
    ];
    for (const { target, status } of attempts) {
      it(`refuses ${JSON.stringify(target)} with ${status}`, async () => {
        const res = await rawRequest(server.port, target);
        assert.equal(res.status, status);
        const body = res.body.toString('latin1');
        assert.ok(!body.includes(OUTSIDE_SECRET) && !body.includes(DOTFILE_SECRET), 'secret leaked');
        if (status === 400) assert.equal(server.notes.at(-1)?.event, 'request.bad_path');
      });
    }

    it('refuses the same attempts from the cache on a second try', async () => {
      for (const { target, status } of attempts) {
        const res = await rawRequest(server.port, target);
        assert.equal(res.status, status, target);
      }
    });
  });

  describe('cache', () => {
    it('serves a changed file fresh after the revalidation interval', async () => {
      const file = path.join(root, 'changing.txt');
      await fs.writeFile(file, 'version one');
      const first = await rawRequest(server.port, '/changing.txt');
      assert.equal(first.body.toString(), 'version one');
      await fs.writeFile(file, 'version two, longer');
      await sleep(1100);
      const second = await rawRequest(server.port, '/changing.txt');
      assert.equal(second.status, 200);
      assert.equal(second.body.toString(), 'version two, longer');
      assert.notEqual(second.headers.etag, first.headers.etag);
    });

    it('sees a file created after a cached 404', async () => {
      const miss = await rawRequest(server.port, '/late.txt');
      assert.equal(miss.status, 404);
      await fs.writeFile(path.join(root, 'late.txt'), 'arrived');
      await sleep(1100);
      const hit = await rawRequest(server.port, '/late.txt');
      assert.equal(hit.status, 200);
      assert.equal(hit.body.toString(), 'arrived');
    });

    it('stops serving a deleted file after the revalidation interval', async () => {
      const file = path.join(root, 'doomed.txt');
      await fs.writeFile(file, 'soon gone');
      assert.equal((await rawRequest(server.port, '/doomed.txt')).status, 200);
      await fs.rm(file);
      await sleep(1100);
      assert.equal((await rawRequest(server.port, '/doomed.txt')).status, 404);
    });

    it('answers from memory within the revalidation interval', async () => {
      const slow = await startServer(vhostFor(root), { revalidateAfterMs: 60_000 });
      try {
        const file = path.join(root, 'remembered.txt');
        await fs.writeFile(file, 'remembered');
        assert.equal((await rawRequest(slow.port, '/remembered.txt')).status, 200);
        await fs.rm(file);
        const res = await rawRequest(slow.port, '/remembered.txt');
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'remembered');
      } finally {
        await slow.close();
      }
    });

    it('stays correct when the cache is smaller than the working set', async () => {
      const small = await startServer(vhostFor(root), { maxCacheBytes: 2048, maxCachedRoutes: 2, maxNegativeEntries: 1 });
      try {
        const names = ['a', 'b', 'c', 'd', 'e'];
        for (const name of names) await fs.writeFile(path.join(root, `evict-${name}.txt`), name.repeat(700));
        for (let round = 0; round < 3; round++) {
          for (const name of names) {
            const res = await rawRequest(small.port, `/evict-${name}.txt`);
            assert.equal(res.body.toString(), name.repeat(700));
            assert.equal((await rawRequest(small.port, `/missing-${name}`)).status, 404);
          }
        }
      } finally {
        await small.close();
      }
    });

    it('answers concurrent first requests for one file consistently', async () => {
      await fs.writeFile(path.join(root, 'burst.txt'), 'burst');
      const results = await Promise.all(Array.from({ length: 20 }, () => rawRequest(server.port, '/burst.txt')));
      for (const res of results) assert.equal(res.body.toString(), 'burst');
    });
  });

  describe('construction', () => {
    it('refuses a vhost without a root', () => {
      assert.throws(() => createStaticHandler(vhostFor(root, { root: null })));
    });
  });
});
