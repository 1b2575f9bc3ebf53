/**
 * The directory listing page (src/worker/handlers/static/listing.ts): hidden
 * names left out, names sorted, every name escaped for HTML and linked as
 * one relative path segment.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeHtml, listingHeaders, listingPage } from '../../src/worker/handlers/static/listing.js';

const dirent = (name: string, directory = false) => ({ name, isDirectory: () => directory });

describe('directory listing', () => {
  it('lists visible names sorted, directories with a slash, and a parent link below the root', () => {
    const page = listingPage([dirent('b.txt'), dirent('.env'), dirent('a', true), dirent('.git', true)], '/docs/').toString();
    const links = [...page.matchAll(/<a href="([^"]*)">([^<]*)<\/a>/g)].map((match) => [match[1], match[2]]);
    assert.deepEqual(links, [
      ['../', '../'],
      ['a/', 'a/'],
      ['b.txt', 'b.txt'],
    ]);
    assert.match(page, /<title>Index of \/docs\/<\/title>/);
  });

  it('has no parent link at the root', () => {
    assert.doesNotMatch(listingPage([dirent('x')], '/').toString(), /\.\.\//);
  });

  it('escapes names for HTML and encodes links, so a name cannot become markup or a scheme', () => {
    const page = listingPage([dirent('<img src=x onerror=alert(1)>'), dirent('javascript:alert(1)'), dirent('a"b&c')], '/<s>/').toString();
    assert.doesNotMatch(page, /<img|<s>/);
    assert.match(page, /href="javascript%3Aalert\(1\)"/);
    assert.match(page, /&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.match(page, /href="a%22b%26c">a&quot;b&amp;c</);
    assert.match(page, /Index of \/&lt;s&gt;\//);
  });

  it('leaves out a name no URL can hold (a lone surrogate)', () => {
    const page = listingPage([dirent('ok'), dirent('bad\ud800')], '/').toString();
    assert.match(page, /href="ok"/);
    assert.doesNotMatch(page, /bad/);
  });

  it('escapes the five HTML specials', () => assert.equal(escapeHtml(`&<>"'`), '&amp;&lt;&gt;&quot;&#39;'));

  it('sends the page with a policy that allows no script', () => {
    const page = listingPage([], '/');
    assert.deepEqual(listingHeaders(page), {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': String(page.length),
      'Content-Security-Policy': "default-src 'none'",
    });
  });
});
