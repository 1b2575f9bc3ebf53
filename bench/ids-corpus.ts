/**
 * `npm run ids-corpus`: the IDS engine's accuracy on public attack and
 * benign corpora that Debian packages ship, kept apart from the unit tests
 * (test/unit/ids.test.ts) so that tuning to single strings shows as such.
 *
 * Each string is placed as a real client would place it: as a query value
 * (percent-encoded; strings that the list already writes percent-encoded are
 * sent as written), as a urlencoded form field, as a JSON string value, and
 * in an ordinary request header (X-Search; newlines become spaces, UTF-8 is
 * seen as the Latin-1 bytes Node hands over). Path traversals also go in
 * the path; User-Agent strings only where browsers send them.
 *
 * Attacks (apt-get install wfuzz sqlmap wapiti):
 *   sqli      wfuzz wordlist/Injections/SQL.txt, wordlist/vulns/sql_inj.txt;
 *             wapiti data/attacks/blindSQLPayloads.txt;
 *             sqlmap data/xml/payloads/*.xml, each test's request payload
 *             inside every boundary (data/xml/boundaries.xml, level <= 3)
 *             whose clause and place fit it, as sqlmap builds its requests
 *   xss       wfuzz wordlist/Injections/XSS.txt; wapiti data/attacks/xssPayloads.ini
 *   traversal wfuzz wordlist/Injections/Traversal.txt, wordlist/vulns/dirTraversal*.txt
 *   command   wapiti data/attacks/execPayloads.txt
 * Benign (apt-get install fortunes fortunes-zh fortunes-ru fortunes-de
 * fortunes-es wamerican wngerman wfrench hunspell-ar hunspell-ru hunspell-ko;
 * the rest is on every Debian system or comes with the packages above):
 *   fortune cookies (English, Chinese, Russian, German, Spanish), search
 *   phrases of 1-5 dictionary words (English, German, French, Arabic,
 *   Russian, Korean), browser User-Agents (sqlmap data/txt/user-agents.txt),
 *   Debian changelog entries, Markdown paragraphs from /usr/share/doc,
 *   Python source snippets (the standard library), path words (wfuzz
 *   wordlist/general/common.txt).
 *
 * Probes are listed apart and not counted as attacks: a list line that is a
 * bare word or two (`select`, `order by`, `PRINT @@variable`, `1e100`), or,
 * for SQL, a single word with punctuation that neither comments out the
 * rest of a query after a quote (`'`, `admin'`, `now()`, `*(|(mail=*))`):
 * they provoke an error or test a filter, they inject no logic, and blocking
 * them would block the words themselves. LDAP filters in the SQL lists
 * ("*(|(objectclass=*))") are another language and listed with them.
 *
 * Sampling is seeded, so two runs read the same strings. Prints rates per
 * category, source and placement, then every miss and false positive
 * (`--list N` caps each list; default 60).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { IdsEngine, IdsMatch } from '../src/worker/ids/index.js';
import { seeded } from '../test/support/seeded.js';

type Category = 'sqli' | 'xss' | 'traversal' | 'command';
type Placement = 'query' | 'form' | 'json' | 'header' | 'path' | 'user-agent';

interface Sample {
  readonly source: string;
  /** The text as the attacker or user means it (what the application sees). */
  readonly text: string;
  /** How it goes in a URL or form: as written when the list writes it percent-encoded, else encoded. */
  readonly wire: string;
  readonly placements: readonly Placement[];
  /** What goes in a header when it is not the text. */
  readonly headerText?: string;
}

interface AttackSample extends Sample {
  readonly category: Category;
}

const LIST_LIMIT = (() => {
  const at = process.argv.indexOf('--list');
  return at === -1 ? 60 : Number(process.argv[at + 1] ?? 60);
})();

const missing = new Set<string>();

function readText(file: string): string | null {
  if (!existsSync(file)) {
    missing.add(file);
    return null;
  }
  const data = readFileSync(file);
  return (file.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8');
}

function lines(file: string): string[] {
  return (readText(file) ?? '').split(/\r?\n/).filter((line) => line.length > 0);
}

function sample<T>(items: readonly T[], count: number, seed: number): T[] {
  const random = seeded(seed);
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, count);
}

const ESCAPED = /%[0-9a-f]{2}/i;

/**
 * A list line as sent: written with escapes, it goes on the wire as written
 * (spaces and "#", "&" escaped) and means its text decoded until no escape
 * is left (a double-encoded line is meant for an application that decodes
 * twice); a line whose escapes are not UTF-8 (overlong forms) or are IIS's
 * %uXXXX exists only in a URL (urlOnly). Otherwise it is encoded.
 */
function wireOf(line: string): { text: string; wire: string; urlOnly: boolean } {
  const iis = /%u[0-9a-f]{4}/i.test(line);
  if (!ESCAPED.test(line) && !iis) return { text: line, wire: encodeURIComponent(line), urlOnly: false };
  const wire = line.replace(/[ #&\t\r\n"<>]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  // IIS's %uXXXX exists only in URLs that IIS decodes.
  if (iis) return { text: line, wire, urlOnly: true };
  let text = line;
  for (let round = 0; round < 3 && ESCAPED.test(text); round++) {
    try {
      text = decodeURIComponent(text.replace(/%(?![0-9a-f]{2})/gi, '%25'));
    } catch {
      return { text: line, wire, urlOnly: true };
    }
  }
  return { text, wire, urlOnly: false };
}

const ATTACK_PLACEMENTS: readonly Placement[] = ['query', 'form', 'json', 'header'];

function attack(category: Category, source: string, line: string, extra: readonly Placement[] = []): AttackSample {
  const { text, wire, urlOnly } = wireOf(line);
  // A URL-only line goes in a header as written (the engine decodes header values as an application would).
  if (urlOnly) return { category, source, text, wire, placements: ['query', 'form', ...extra], headerText: line };
  // A header cannot carry CR, LF or NUL: a line that needs them is not placed there.
  const placements = /[\r\n\0]/.test(text) ? ATTACK_PLACEMENTS.filter((p) => p !== 'header') : ATTACK_PLACEMENTS;
  return { category, source, text, wire, placements: [...placements, ...extra] };
}

// ---- attack corpora -------------------------------------------------------

const WFUZZ = '/usr/share/wfuzz/wordlist';
const WAPITI = '/usr/lib/python3/dist-packages/wapitiCore/data/attacks';
const SQLMAP = '/usr/share/sqlmap/data';

/** A wfuzz list: "#" lines are comments; dirTraversal's {FILE} is "replaced with the absolute URI of a local resource". */
function wfuzzList(file: string, category: Category, extra: readonly Placement[] = []): AttackSample[] {
  return lines(path.join(WFUZZ, file))
    .filter((line) => !(file.startsWith('vulns/') && line.startsWith('#')))
    .map((line) => attack(category, `wfuzz ${file}`, line.replaceAll('{FILE}', 'etc/passwd'), extra));
}

function wapitiBlindSql(): AttackSample[] {
  return lines(path.join(WAPITI, 'blindSQLPayloads.txt')).map((line) =>
    attack(
      'sqli',
      'wapiti blindSQLPayloads.txt',
      line.replaceAll('[TIME]', '5').replaceAll('[VALUE]', '1').replaceAll('[LF]', '\n').replaceAll('[TAB]', '\t'),
    ),
  );
}

function wapitiExec(): AttackSample[] {
  return lines(path.join(WAPITI, 'execPayloads.txt')).map((line) =>
    attack('command', 'wapiti execPayloads.txt', line.replaceAll('[VALUE]', '127.0.0.1').replaceAll('[LF]', '\n').replaceAll('\\0', '\0')),
  );
}

function wapitiXss(): AttackSample[] {
  const out: AttackSample[] = [];
  for (const line of lines(path.join(WAPITI, 'xssPayloads.ini'))) {
    const match = /^payload\s*=\s*(.*)$/.exec(line);
    if (match === null) continue;
    // In-tag payloads start after "y" and close the attribute with its quote (wapiti net/xss_utils.py).
    const inTag = match[1]!.includes('[ATTR_SEP]');
    const payload = `${inTag ? 'y' : ''}${match[1]!}`
      .replaceAll('[ATTR_SEP]', '"')
      .replaceAll('[VALUE_SEP]', '"')
      .replaceAll('__XSS__', 'w4p1t1x')
      .replaceAll('[LF]', '\n')
      .replaceAll('[TAB]', '\t')
      .replaceAll('[FF]', '\f')
      .replaceAll('[SLASH]', '/')
      .replaceAll('[DOUBLE_QUOTE]', '"')
      .replaceAll('[EQUAL]', '=');
    // wapiti sends these through its own encoder: the text is what it means.
    out.push({
      category: 'xss',
      source: 'wapiti xssPayloads.ini',
      text: payload,
      wire: encodeURIComponent(payload),
      placements: ATTACK_PLACEMENTS,
    });
  }
  return out;
}

interface SqlmapBoundary {
  level: number;
  clause: Set<string>;
  where: Set<string>;
  prefix: string;
  suffix: string;
}

function tag(block: string, name: string): string {
  const match = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(block);
  if (match === null) return '';
  return match[1]!
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&');
}

/** sqlmap's placeholders, filled the way sqlmap fills them (agent.py), with fixed "random" values. */
function fillSqlmap(s: string): string {
  return s
    .replaceAll('[GENERIC_SQL_COMMENT]', '-- [RANDSTR]')
    .replaceAll('[SLEEPTIME]', '5')
    .replaceAll('[DELIMITER_START]', 'qzvkq')
    .replaceAll('[DELIMITER_STOP]', 'qbxjq')
    .replace(/\[RANDNUM(\d?)\]/g, (_, n: string) => String(4271 + Number(n || 0) * 1013))
    .replace(/\[RANDSTR(\d?)\]/g, (_, n: string) => ['vKqZ', 'hTrd', 'Lpwe'][Number(n || 0)] ?? 'xQvn')
    .replaceAll('[ORIGVALUE]', '1')
    .replaceAll('[ORIGINAL]', '1')
    .replaceAll('[INFERENCE]', '4271=4271')
    .replaceAll('[QUERY]', 'SELECT 4271')
    .replaceAll('[SPACE_REPLACE]', ' ')
    .replaceAll('[DOLLAR_REPLACE]', '$')
    .replaceAll('[AT_REPLACE]', '@')
    .replaceAll('[HASH_REPLACE]', '#');
}

function sqlmapPayloads(): AttackSample[] {
  const boundariesXml = readText(path.join(SQLMAP, 'xml/boundaries.xml'));
  if (boundariesXml === null) return [];
  const boundaries: SqlmapBoundary[] = [];
  for (const match of boundariesXml.replace(/<!--[\s\S]*?-->/g, '').matchAll(/<boundary>([\s\S]*?)<\/boundary>/g)) {
    const block = match[1]!;
    boundaries.push({
      level: Number(tag(block, 'level')),
      clause: new Set(tag(block, 'clause').split(',')),
      where: new Set(tag(block, 'where').split(',')),
      prefix: tag(block, 'prefix'),
      suffix: tag(block, 'suffix'),
    });
  }
  const out = new Map<string, AttackSample>();
  const dir = path.join(SQLMAP, 'xml/payloads');
  if (!existsSync(dir)) {
    missing.add(dir);
    return [];
  }
  for (const file of readdirSync(dir).sort()) {
    const xml = readText(path.join(dir, file))!.replace(/<!--[\s\S]*?-->/g, '');
    for (const match of xml.matchAll(/<test>([\s\S]*?)<\/test>/g)) {
      const block = match[1]!;
      const clauses = tag(block, 'clause').split(',');
      const wheres = tag(block, 'where').split(',');
      const comment = tag(block, 'comment');
      let payloads = [tag(block, 'payload')];
      if (payloads[0] === '' && /\[UNION\]/.test(tag(block, 'vector'))) {
        // A UNION test: sqlmap writes the column list itself (techniques/union/use.py).
        // [CHAR] is --union-char, a random number unless given.
        const char =
          tag(block, 'char') === 'NULL' ? 'NULL' : fillSqlmap((tag(block, 'char') || '[RANDNUM]').replace('[CHAR]', '[RANDNUM]'));
        payloads = [1, 3, 5].map(
          (columns) => `UNION ALL SELECT ${[...Array(columns - 1).fill(char), 'CONCAT(0x717a766b71,0x4a6d4c,0x71627a6a71)'].join(',')}`,
        );
      }
      for (const payload of payloads) {
        if (payload === '') continue;
        for (const boundary of boundaries) {
          if (boundary.level > 3) continue;
          if (!clauses.some((c) => c === '0' || boundary.clause.has(c) || boundary.clause.has('0'))) continue;
          for (const where of wheres) {
            if (!boundary.where.has(where)) continue;
            // As sqlmap's agent.py prefixQuery/suffixQuery: the original value, the prefix and a
            // space (none before a stacked ";"), the payload, then the comment or else the suffix.
            const original = where === '1' ? '1' : where === '2' ? '-4271' : '';
            const prefix = where === '3' ? '' : `${boundary.prefix}${payload.startsWith(';') ? '' : ' '}`;
            const suffix = comment !== '' || boundary.suffix === '' || where === '3' ? '' : ` ${boundary.suffix}`;
            const text = fillSqlmap(`${original}${prefix}${payload}${comment}${suffix}`);
            if (!out.has(text)) {
              out.set(text, {
                category: 'sqli',
                source: 'sqlmap payloads/*.xml',
                text,
                wire: encodeURIComponent(text),
                placements: ATTACK_PLACEMENTS,
              });
            }
          }
        }
      }
    }
  }
  return [...out.values()];
}

/** See the file comment: a word or two, or (SQL) one word with punctuation that cuts no query. */
function isProbe(sample: AttackSample): boolean {
  const text = sample.text.trim();
  const words = text.match(/[A-Za-z0-9_@$.]+/g) ?? [];
  const punctuation = text.replace(/[A-Za-z0-9_@$.\s]/g, '');
  if (punctuation === '' && words.length <= 2) return true;
  if (sample.category !== 'sqli') return false;
  // LDAP filters ("*(|(mail=*))") sit in the SQL lists but are another language.
  if (/\(\s*[|&!]\s*\(/.test(text)) return true;
  const cutsAfterQuote = /['"`]/.test(text) && /--|#|\/\*/.test(text);
  return words.length <= 1 && !cutsAfterQuote;
}

// ---- benign corpora -------------------------------------------------------

const BENIGN_PLACEMENTS: readonly Placement[] = ['query', 'form', 'json', 'header'];

function benign(source: string, text: string, placements: readonly Placement[] = BENIGN_PLACEMENTS): Sample {
  return { source, text, wire: encodeURIComponent(text), placements };
}

/** Fortune cookies, each as one text; overstriking ("_\b") removed. */
function fortunes(files: readonly string[], source: string, count: number, seed: number): Sample[] {
  const texts: string[] = [];
  for (const file of files) {
    const content = readText(file);
    if (content === null) continue;
    for (const fortune of content.split(/\n%\n/)) {
      const text = fortune
        .replace(/.\x08/g, '')
        .replace(/\x1b\[[0-9;]*m/g, '')
        .trim();
      if (text.length > 0 && text.length <= 2000) texts.push(text);
    }
  }
  return sample(texts, count, seed).map((text) => benign(source, text));
}

function fortuneFiles(dir: string): string[] {
  if (!existsSync(dir)) {
    missing.add(dir);
    return [];
  }
  return readdirSync(dir)
    .filter((name) => !name.endsWith('.dat') && !name.endsWith('.u8'))
    .map((name) => path.join(dir, name))
    .filter((file) => statSync(file).isFile());
}

/** Search phrases of 1-5 words drawn from a word list (hunspell lists carry "/flags" after each word). */
function phrases(file: string, source: string, count: number, seed: number): Sample[] {
  const words = lines(file)
    .slice(file.endsWith('.dic') ? 1 : 0)
    .map((line) => line.split('/', 1)[0]!.trim())
    .filter((word) => word.length > 0);
  if (words.length === 0) return [];
  const random = seeded(seed);
  return Array.from({ length: count }, () => {
    const n = 1 + Math.floor(random() * 5);
    return benign(source, Array.from({ length: n }, () => words[Math.floor(random() * words.length)]!).join(' '));
  });
}

function changelogEntries(count: number, seed: number): Sample[] {
  const entries: string[] = [];
  const docs = '/usr/share/doc';
  for (const pkg of readdirSync(docs)) {
    const file = path.join(docs, pkg, 'changelog.Debian.gz');
    if (!existsSync(file)) continue;
    let text: string;
    try {
      text = gunzipSync(readFileSync(file)).toString('utf8');
    } catch {
      continue;
    }
    // "  * entry text\n    continued" -> one entry.
    for (const match of text.slice(0, 200_000).matchAll(/^ {2}[*-] ([^\n]*(?:\n {4,}[^\n]*)*)/gm)) {
      entries.push(match[1]!.replace(/\n\s+/g, ' '));
    }
  }
  return sample(entries, count, seed).map((text) => benign('debian changelogs', text));
}

function markdownParagraphs(count: number, seed: number): Sample[] {
  const paragraphs: string[] = [];
  const walk = (dir: string, depth: number): void => {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      const stat = statSync(file, { throwIfNoEntry: false });
      if (stat === undefined) continue;
      if (stat.isDirectory() && depth < 3) walk(file, depth + 1);
      else if (stat.isFile() && /\.md(?:\.gz)?$/.test(name)) {
        for (const paragraph of (readText(file) ?? '').split(/\n\s*\n/)) {
          const text = paragraph.trim();
          if (text.length >= 20 && text.length <= 2000) paragraphs.push(text);
        }
      }
    }
  };
  walk('/usr/share/doc', 0);
  return sample(paragraphs, count, seed).map((text) => benign('markdown in /usr/share/doc', text));
}

function pythonSnippets(count: number, seed: number): Sample[] {
  const dir = '/usr/lib/python3.11';
  if (!existsSync(dir)) {
    missing.add(dir);
    return [];
  }
  const snippets: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.py')) continue;
    const source = readFileSync(path.join(dir, name), 'utf8').split('\n');
    for (let i = 0; i + 8 <= source.length; i += 8) {
      const text = source
        .slice(i, i + 8)
        .join('\n')
        .trim();
      if (text.length >= 40) snippets.push(text);
    }
  }
  return sample(snippets, count, seed).map((text) => benign('python stdlib snippets', text));
}

// ---- the measurement ------------------------------------------------------

/** IDS_ENGINE=/path/to/index.js measures another build of the engine (an older commit's, for a before/after). */
const enginePath = process.env.IDS_ENGINE ?? '../src/worker/ids/index.js';
const { createIdsEngine } = (await import(enginePath)) as { createIdsEngine: (rules: []) => IdsEngine };
const engine = createIdsEngine([]);
const BROWSER_HEADERS = {
  host: 'shop.example',
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'accept-language': 'en-US,en;q=0.5',
};

/** A header value as Node hands it over: one line, each UTF-8 byte a Latin-1 character. */
function asHeaderValue(text: string): string {
  return Buffer.from(text.replace(/[\r\n\0]+/g, ' '), 'utf8').toString('latin1');
}

function inspect(sample: Sample, placement: Placement): IdsMatch[] {
  switch (placement) {
    case 'query':
      return engine.inspectRequest(`/search?page=1&q=${sample.wire}`, BROWSER_HEADERS);
    case 'path':
      return engine.inspectRequest(`/files/${sample.wire}`, BROWSER_HEADERS);
    case 'form':
      return engine.inspectBody(Buffer.from(`name=alice&q=${sample.wire}`), 'application/x-www-form-urlencoded');
    case 'json':
      return engine.inspectBody(Buffer.from(JSON.stringify({ name: 'alice', q: sample.text })), 'application/json');
    case 'header':
      return engine.inspectRequest('/search', { ...BROWSER_HEADERS, 'x-search': asHeaderValue(sample.headerText ?? sample.text) });
    case 'user-agent':
      return engine.inspectRequest('/', { ...BROWSER_HEADERS, 'user-agent': asHeaderValue(sample.text) });
  }
}

interface Tally {
  pairs: number;
  hits: number;
  byPlacement: Map<Placement, { pairs: number; hits: number }>;
}

function tally(): Tally {
  return { pairs: 0, hits: 0, byPlacement: new Map() };
}

function count(t: Tally, placement: Placement, hit: boolean): void {
  t.pairs++;
  if (hit) t.hits++;
  const p = t.byPlacement.get(placement) ?? { pairs: 0, hits: 0 };
  p.pairs++;
  if (hit) p.hits++;
  t.byPlacement.set(placement, p);
}

const percent = (hits: number, pairs: number): string => (pairs === 0 ? '   -  ' : `${((100 * hits) / pairs).toFixed(2).padStart(6)}%`);

function row(name: string, t: Tally, samples: number): string {
  const placements = [...t.byPlacement.entries()].map(([p, v]) => `${p} ${percent(v.hits, v.pairs).trim()}`).join('  ');
  return `  ${name.padEnd(34)} ${String(samples).padStart(6)} strings ${String(t.pairs).padStart(7)} requests ${percent(t.hits, t.pairs)}   ${placements}`;
}

const show = (s: string): string => JSON.stringify(s.length > 160 ? `${s.slice(0, 160)}...` : s);

function main(): void {
  const attacks: AttackSample[] = [
    ...wfuzzList('Injections/SQL.txt', 'sqli'),
    ...wfuzzList('vulns/sql_inj.txt', 'sqli'),
    ...wapitiBlindSql(),
    ...sqlmapPayloads(),
    ...wfuzzList('Injections/XSS.txt', 'xss'),
    ...wapitiXss(),
    ...wfuzzList('Injections/Traversal.txt', 'traversal', ['path']),
    ...wfuzzList('vulns/dirTraversal.txt', 'traversal', ['path']),
    ...wfuzzList('vulns/dirTraversal-nix.txt', 'traversal', ['path']),
    ...wfuzzList('vulns/dirTraversal-win.txt', 'traversal', ['path']),
    ...wapitiExec(),
  ];
  const fortuneDir = '/usr/share/games/fortunes';
  const userAgents = lines(path.join(SQLMAP, 'txt/user-agents.txt')).filter((line) => !line.startsWith('#'));
  const benigns: Sample[] = [
    ...fortunes(
      fortuneFiles(fortuneDir).filter((f) => !/chinese|tang300|\/de$|\/es$|\/ru$/.test(f)),
      'fortunes (English)',
      3000,
      1,
    ),
    ...fortunes([path.join(fortuneDir, 'chinese'), path.join(fortuneDir, 'tang300')], 'fortunes-zh (Chinese)', 1000, 2),
    ...fortunes(fortuneFiles(path.join(fortuneDir, 'ru')), 'fortunes-ru (Russian)', 1000, 3),
    ...fortunes(fortuneFiles(path.join(fortuneDir, 'de')), 'fortunes-de (German)', 1000, 4),
    ...fortunes(fortuneFiles(path.join(fortuneDir, 'es')), 'fortunes-es (Spanish)', 1000, 5),
    ...phrases('/usr/share/dict/american-english', 'wamerican phrases', 2000, 6),
    ...phrases('/usr/share/dict/ngerman', 'wngerman phrases', 1000, 7),
    ...phrases('/usr/share/dict/french', 'wfrench phrases', 1000, 8),
    ...phrases('/usr/share/hunspell/ar.dic', 'hunspell-ar phrases (Arabic)', 1000, 9),
    ...phrases('/usr/share/hunspell/ru_RU.dic', 'hunspell-ru phrases (Russian)', 1000, 10),
    ...phrases('/usr/share/hunspell/ko.dic', 'hunspell-ko phrases (Korean)', 1000, 11),
    ...sample(userAgents, 2000, 12).map((ua) => benign('sqlmap user-agents.txt', ua, ['user-agent', 'query'])),
    ...changelogEntries(3000, 13),
    ...markdownParagraphs(2000, 14),
    ...pythonSnippets(2000, 15),
    ...lines(path.join(WFUZZ, 'general/common.txt')).map((word) => benign('wfuzz general/common.txt', word, ['path', 'query'])),
  ];

  console.log(`IDS corpus measurement: node ${process.version}, engine ${enginePath}`);
  if (missing.size > 0) console.log(`missing (install the packages named in bench/ids-corpus.ts): ${[...missing].join(', ')}`);

  const probes = attacks.filter(isProbe);
  const counted = attacks.filter((a) => !isProbe(a));
  const byCategory = new Map<Category, Tally>();
  const bySource = new Map<string, { t: Tally; samples: number }>();
  const perCategorySamples = new Map<Category, number>();
  const misses: string[] = [];
  const total = tally();
  for (const sample of counted) {
    const missed: Placement[] = [];
    for (const placement of sample.placements) {
      const hit = inspect(sample, placement).some((m) => m.action === 'block');
      if (!hit) missed.push(placement);
      const c = byCategory.get(sample.category) ?? tally();
      byCategory.set(sample.category, c);
      count(c, placement, hit);
      const s = bySource.get(`${sample.category} ${sample.source}`) ?? { t: tally(), samples: 0 };
      bySource.set(`${sample.category} ${sample.source}`, s);
      count(s.t, placement, hit);
      count(total, placement, hit);
    }
    bySource.get(`${sample.category} ${sample.source}`)!.samples++;
    perCategorySamples.set(sample.category, (perCategorySamples.get(sample.category) ?? 0) + 1);
    if (missed.length > 0) misses.push(`  ${sample.category.padEnd(9)} [${missed.join(',')}] ${show(sample.text)}  (${sample.source})`);
  }

  console.log(`\nattacks: detection (a request refused), ${counted.length} strings, ${probes.length} probes not counted`);
  for (const [category, t] of byCategory) console.log(row(category, t, perCategorySamples.get(category)!));
  console.log(row('all attacks', total, counted.length));
  console.log('  by source:');
  for (const [source, { t, samples }] of bySource) console.log(row(source, t, samples));

  const benignTotal = tally();
  const benignBySource = new Map<string, { t: Tally; samples: number }>();
  const falsePositives: string[] = [];
  for (const sample of benigns) {
    const flagged: string[] = [];
    for (const placement of sample.placements) {
      const matches = inspect(sample, placement).filter((m) => m.action === 'block');
      if (matches.length > 0) flagged.push(`${placement}:${matches.map((m) => m.rule).join('+')}`);
      const s = benignBySource.get(sample.source) ?? { t: tally(), samples: 0 };
      benignBySource.set(sample.source, s);
      count(s.t, placement, matches.length > 0);
      count(benignTotal, placement, matches.length > 0);
    }
    benignBySource.get(sample.source)!.samples++;
    if (flagged.length > 0) falsePositives.push(`  [${flagged.join(',')}] ${show(sample.text)}  (${sample.source})`);
  }
  console.log(`\nbenign: false positives (a request refused), ${benigns.length} strings`);
  for (const [source, { t, samples }] of benignBySource) console.log(row(source, t, samples));
  console.log(row('all benign', benignTotal, benigns.length));

  const list = (title: string, items: readonly string[]): void => {
    console.log(`\n${title}: ${items.length}${items.length > LIST_LIMIT ? ` (first ${LIST_LIMIT}; --list N for more)` : ''}`);
    for (const item of items.slice(0, LIST_LIMIT)) console.log(item);
  };
  list(
    'probes not counted',
    probes.map((p) => `  ${p.category.padEnd(9)} ${show(p.text)}  (${p.source})`),
  );
  list('misses (placements where the attack passed)', misses);
  list('false positives (placement:rule)', falsePositives);
  console.log(
    `\nsummary: detection ${percent(total.hits, total.pairs).trim()} of ${total.pairs} attack requests; ` +
      `false positives ${percent(benignTotal.hits, benignTotal.pairs).trim()} of ${benignTotal.pairs} benign requests`,
  );
}

main();
