/**
 * The page the compression scenario proxies: 16 KiB of HTML that compresses
 * as a real page does (about 3 to 5 times), not as one repeated string would
 * (hundreds of times, which measures nothing). Markup and prose are drawn
 * from small vocabularies by a seeded generator, so every run and every
 * server gets the same bytes.
 */
import { seeded } from '../test/support/seeded.js';

/** Exactly this many bytes. */
export const PAGE_BYTES = 16 * 1024;

const WORDS = [
  'the',
  'of',
  'and',
  'to',
  'in',
  'a',
  'is',
  'that',
  'for',
  'it',
  'as',
  'was',
  'with',
  'be',
  'by',
  'on',
  'not',
  'he',
  'this',
  'are',
  'or',
  'his',
  'from',
  'at',
  'which',
  'but',
  'have',
  'an',
  'they',
  'you',
  'were',
  'her',
  'she',
  'there',
  'been',
  'one',
  'all',
  'we',
  'their',
  'has',
  'would',
  'when',
  'if',
  'so',
  'no',
  'will',
  'more',
  'other',
  'its',
  'who',
  'may',
  'into',
  'some',
  'time',
  'two',
  'what',
  'could',
  'our',
  'them',
  'than',
  'these',
  'then',
  'any',
  'only',
  'over',
  'new',
  'most',
  'also',
  'used',
  'such',
  'first',
  'many',
  'those',
  'made',
  'after',
  'should',
  'each',
  'well',
  'must',
  'through',
  'where',
  'how',
  'years',
  'way',
  'people',
  'because',
  'very',
  'much',
  'even',
  'might',
  'between',
  'back',
  'world',
  'being',
  'same',
  'own',
  'still',
  'great',
  'under',
  'last',
  'while',
  'both',
  'never',
  'just',
  'upstream',
  'server',
  'request',
  'header',
  'worker',
  'cache',
  'proxy',
  'connection',
  'response',
  'client',
  'certificate',
  'deployment',
  'timeout',
  'retry',
  'session',
  'cookie',
  'route',
  'config',
  'release',
  'backend',
  'frontend',
  'queue',
  'latency',
  'traffic',
  'gateway',
  'cluster',
  'replica',
  'region',
  'zone',
  'bucket',
  'token',
  'policy',
  'metric',
  'alert',
  'dashboard',
  'pipeline',
  'module',
  'handler',
  'buffer',
  'socket',
  'thread',
  'process',
  'memory',
  'disk',
  'kernel',
  'network',
  'packet',
  'stream',
  'chunk',
  'body',
  'status',
  'error',
  'warning',
  'notice',
  'audit',
  'event',
  'rule',
  'limit',
  'window',
  'budget',
  'schedule',
  'rollout',
  'canary',
  'rollback',
  'snapshot',
  'backup',
  'restore',
  'archive',
  'index',
  'query',
  'filter',
  'sort',
  'page',
  'table',
  'column',
  'field',
  'record',
  'schema',
  'migration',
  'version',
  'branch',
  'commit',
  'review',
  'ticket',
  'owner',
  'team',
  'incident',
  'report',
  'summary',
  'review',
];
const TOPICS = ['caching', 'deployment', 'observability', 'security', 'performance', 'migration', 'scaling', 'routing'];

/** The page: a header and navigation, then articles of headings, paragraphs, links and lists until it is PAGE_BYTES long. */
export function htmlPage(): Buffer {
  const random = seeded(0x13);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  // Common words more often than rare ones, as in prose (roughly Zipf's law).
  const word = (): string => WORDS[Math.floor(random() * random() * random() * WORDS.length)] as string;
  const sentence = (): string => {
    const words = Array.from({ length: 6 + Math.floor(random() * 12) }, (_, index) =>
      index > 2 && random() < 0.08 ? `${word()},` : random() < 0.03 ? String(Math.floor(random() * 2000)) : word(),
    );
    const first = words[0] as string;
    return `${first[0]!.toUpperCase()}${first.slice(1)} ${words.slice(1).join(' ')}.`.replace(/,(\.)?$/, '.');
  };
  const head =
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    '<title>Operating notes: caching, routing and deployment</title>\n' +
    '<link rel="stylesheet" href="/assets/site.css">\n</head>\n<body>\n' +
    `<header class="site-header"><nav><ul>${TOPICS.map((topic) => `<li><a href="/topics/${topic}/">${topic}</a></li>`).join('')}</ul></nav></header>\n<main>\n`;
  const foot = '</main>\n<footer class="site-footer"><p>Written by the operations team.</p></footer>\n</body>\n</html>\n';
  const budget = PAGE_BYTES - head.length - foot.length;
  let body = '';
  for (let article = 1; ; article += 1) {
    const topic = pick(TOPICS);
    const paragraphs = Array.from(
      { length: 2 + Math.floor(random() * 3) },
      () => `<p>${Array.from({ length: 2 + Math.floor(random() * 4) }, sentence).join(' ')}</p>\n`,
    ).join('');
    const items = Array.from({ length: 3 }, () => `<li><a href="/${topic}/${Math.floor(random() * 10_000)}.html">${sentence()}</a></li>`);
    const next =
      `<article id="note-${article}" class="note note-${topic}">\n<h2>${topic[0]!.toUpperCase()}${topic.slice(1)}: ${word()} ${word()} ${word()}</h2>\n` +
      `<p class="meta">Note ${article}, filed under <a href="/topics/${topic}/">${topic}</a></p>\n` +
      `${paragraphs}<ul class="related">${items.join('')}</ul>\n</article>\n`;
    if (body.length + next.length > budget) break;
    body += next;
  }
  // Short paragraphs where the next article does not fit, then a comment of spaces for the last few bytes.
  for (;;) {
    const next = `<p>${sentence()}</p>\n`;
    if (body.length + next.length > budget - 8) break;
    body += next;
  }
  const rest = budget - body.length;
  const page = Buffer.from(head + body + (rest >= 8 ? `<!--${' '.repeat(rest - 8)}-->\n` : ' '.repeat(rest)) + foot, 'utf8');
  if (page.length !== PAGE_BYTES) throw new Error(`the compressible page is ${page.length} bytes`);
  return page;
}
