/**
 * The dashboard's page: a few static files shipped in the package
 * (share/dashboard/, no build step, nothing from a CDN), read once when the
 * listener is handed over and served from memory. Inside the jail the
 * directory is a read-only bind mount at the same path (isolation/jail.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/src/worker/dashboard/ -> the package root. */
export const DASHBOARD_BUNDLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../share/dashboard');

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

/** Public files: the page's code and style, which hold no data (the data comes from /api/state). */
const PUBLIC_FILES: Record<string, string> = {
  '/app.js': 'text/javascript; charset=utf-8',
  '/app.css': 'text/css; charset=utf-8',
  '/favicon.svg': 'image/svg+xml',
};

export interface DashboardAssets {
  /** The page, for a client holding the token. */
  readonly page: Buffer;
  /** The login form; `{{message}}` is where a fixed notice goes. */
  readonly login: string;
  readonly files: ReadonlyMap<string, Asset>;
}

export function loadDashboardAssets(dir = DASHBOARD_BUNDLE): DashboardAssets {
  const read = (name: string): Buffer => readFileSync(path.join(dir, name));
  return {
    page: read('index.html'),
    login: read('login.html').toString('utf8'),
    files: new Map(Object.entries(PUBLIC_FILES).map(([url, type]) => [url, { type, body: read(url.slice(1)) }])),
  };
}
