/**
 * Every relative link in README.md and docs/*.md leads somewhere: the file
 * exists, and a #fragment names a heading of that file as GitHub renders it
 * (lower case, punctuation dropped, spaces to hyphens, "-1", "-2" for
 * repeats). Links inside code (fenced blocks, `inline`) are not links.
 * External links (http:, https:, mailto:) are not fetched.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The document's prose: fenced code blocks blanked (line numbers kept) and inline code spans removed. */
function prose(markdown: string): string[] {
  let fence: string | null = null;
  return markdown.split('\n').map((line) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence !== null) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length) fence = null;
      return '';
    }
    if (marker !== undefined) {
      fence = marker;
      return '';
    }
    return line.replace(/(`+)[^`]*?\1/g, '');
  });
}

/** GitHub's anchor for a heading's text. */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

/** Every anchor a document's headings give, duplicates numbered as GitHub numbers them. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  let fence: string | null = null;
  for (const line of markdown.split('\n')) {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence !== null) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length) fence = null;
      continue;
    }
    if (marker !== undefined) {
      fence = marker;
      continue;
    }
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

export interface BrokenLink {
  readonly line: number;
  readonly target: string;
  readonly why: string;
}

/**
 * The relative links of `markdown` (a file at `file`) that do not resolve.
 * `read` returns another document's text, or null when there is no such file.
 */
export function brokenLinks(file: string, markdown: string, read: (file: string) => string | null): BrokenLink[] {
  const broken: BrokenLink[] = [];
  const lines = prose(markdown);
  for (const [index, line] of lines.entries()) {
    for (const match of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = match[1]!;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      const hash = target.indexOf('#');
      const filePart = hash === -1 ? target : target.slice(0, hash);
      const fragment = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
      const resolved = filePart === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(filePart));
      const text = read(resolved);
      if (text === null) {
        broken.push({ line: index + 1, target, why: 'no such file' });
        continue;
      }
      if (fragment !== null && !anchors(text).has(fragment)) {
        broken.push({ line: index + 1, target, why: `no heading gives #${fragment}` });
      }
    }
  }
  return broken;
}

function readFromDisk(file: string): string | null {
  if (!existsSync(file)) return null;
  // A directory is a valid target (GitHub lists it); it has no headings.
  return statSync(file).isDirectory() ? '' : readFileSync(file, 'utf8');
}

describe('the link checker', () => {
  it('gives the anchors GitHub gives', () => {
    assert.equal(slug('The worker is the attacker'), 'the-worker-is-the-attacker');
    assert.equal(slug('`[server.dashboard]`'), 'serverdashboard');
    assert.equal(slug('A reload that changes `workers`'), 'a-reload-that-changes-workers');
    assert.equal(slug('Coming from nginx or Caddy'), 'coming-from-nginx-or-caddy');
    assert.equal(slug('Certificates, tickets and secrets'), 'certificates-tickets-and-secrets');
    assert.deepEqual([...anchors('# A\n## B\n## B\n```\n## C\n```\n')], ['a', 'b', 'b-1']);
  });

  it('reports a missing file, a missing heading, and nothing in code', () => {
    const files: Record<string, string> = {
      '/r/README.md': [
        '# Top',
        'See [there](docs/there.md), [its part](docs/there.md#part), [a gap](docs/gone.md),',
        '[a wrong part](docs/there.md#nowhere), [here](#top), [not here](#bottom),',
        '[the web](https://example.com/x.md) and `[code](docs/gone.md)`.',
        '```',
        '[in a block](docs/gone.md)',
        '```',
      ].join('\n'),
      '/r/docs/there.md': '# There\n## Part\n',
    };
    const broken = brokenLinks('/r/README.md', files['/r/README.md']!, (file) => files[file] ?? null);
    assert.deepEqual(
      broken.map((link) => [link.line, link.target, link.why]),
      [
        [2, 'docs/gone.md', 'no such file'],
        [3, 'docs/there.md#nowhere', 'no heading gives #nowhere'],
        [3, '#bottom', 'no heading gives #bottom'],
      ],
    );
  });
});

describe('README.md and docs/*.md', () => {
  const documents = [
    path.join(ROOT, 'README.md'),
    ...readdirSync(path.join(ROOT, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .sort()
      .map((name) => path.join(ROOT, 'docs', name)),
  ];
  for (const file of documents) {
    it(`${path.relative(ROOT, file)}: every relative link resolves`, () => {
      const broken = brokenLinks(file, readFileSync(file, 'utf8'), readFromDisk);
      assert.deepEqual(
        broken.map((link) => `${path.relative(ROOT, file)}:${link.line}: ${link.target}: ${link.why}`),
        [],
      );
    });
  }
});
