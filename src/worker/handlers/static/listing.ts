/**
 * The directory listing (`directory_listing = true`): a minimal index page
 * of the names a directory holds, hidden names left out, every name escaped
 * for HTML and its link encoded as one path segment.
 */
import type { Dirent } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { OutgoingHttpHeaders } from 'node:http';

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch] ?? ch);
}

/** The index page of the directory at `dirPath`, which the request named `urlPath` (decoded, ending in "/"). */
export async function renderListing(dirPath: string, urlPath: string): Promise<Buffer> {
  return listingPage(await fsp.readdir(dirPath, { withFileTypes: true }), urlPath);
}

/** The page for `dirents`; pure. */
export function listingPage(dirents: readonly Pick<Dirent, 'name' | 'isDirectory'>[], urlPath: string): Buffer {
  const rows: string[] = [];
  if (urlPath !== '/') rows.push('<li><a href="../">../</a></li>');
  const visible = dirents.filter((dirent) => !dirent.name.startsWith('.'));
  visible.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const dirent of visible) {
    const suffix = dirent.isDirectory() ? '/' : '';
    let href: string;
    try {
      // encodeURIComponent also encodes ":", so a name like "javascript:x"
      // stays a relative path.
      href = encodeURIComponent(dirent.name) + suffix;
    } catch {
      continue; // lone surrogate: no URL can name it
    }
    rows.push(`<li><a href="${escapeHtml(href)}">${escapeHtml(dirent.name + suffix)}</a></li>`);
  }
  const title = escapeHtml(`Index of ${urlPath}`);
  const page =
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n` +
    `<body><h1>${title}</h1>\n<ul>\n${rows.join('\n')}\n</ul></body></html>\n`;
  return Buffer.from(page, 'utf8');
}

/** The headers of a listing page. */
export function listingHeaders(page: Buffer): OutgoingHttpHeaders {
  return {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': String(page.length),
    // The page is generated from names anyone with write access to the
    // tree chose; it needs no script, so it gets none.
    'Content-Security-Policy': "default-src 'none'",
  };
}
