/**
 * htpasswd files as `htpasswd -B` writes them: `user:$2y$05$...` lines of
 * bcrypt hashes ($2y$, $2b$, or $2a$ from older tools). Other schemes
 * (MD5-crypt $apr1$, {SHA}, crypt) are refused with the line named: they are
 * fast to brute-force, and a server that silently ignored the line would
 * lock the user out without a word. Read by the master (the files are
 * usually root-only), for `check` and for every generation it starts.
 */
import { readFileSync } from 'node:fs';

/** bcrypt: $2y$NN$ and 53 characters of salt and hash (bcrypt's own base64). */
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
/** Costs a request can pay for (htpasswd -B defaults to 5; 12 takes a quarter second in the worker's bcrypt). */
const MIN_COST = 4;
const MAX_COST = 12;
/** A file larger than this is not an htpasswd file. */
const MAX_FILE_BYTES = 1024 * 1024;

export type HtpasswdEntries = readonly (readonly [user: string, hash: string])[];

/** The entries of an htpasswd file's text, or the first problem, naming its line. */
export function parseHtpasswd(text: string): { ok: true; entries: HtpasswdEntries } | { ok: false; reason: string } {
  const entries: [string, string][] = [];
  const users = new Set<string>();
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const user = colon === -1 ? '' : line.slice(0, colon);
    const hash = colon === -1 ? '' : line.slice(colon + 1);
    if (user === '' || /[\x00-\x1f\x7f]/.test(user)) return { ok: false, reason: `line ${i + 1}: not "user:hash"` };
    const bcrypt = BCRYPT.exec(hash);
    if (bcrypt === null) return { ok: false, reason: `line ${i + 1}: only bcrypt hashes are accepted (make them with htpasswd -B)` };
    const cost = Number(bcrypt[1]);
    if (cost < MIN_COST || cost > MAX_COST)
      return { ok: false, reason: `line ${i + 1}: bcrypt cost ${cost} outside ${MIN_COST}..${MAX_COST}` };
    if (users.has(user)) return { ok: false, reason: `line ${i + 1}: user ${JSON.stringify(user)} appears twice` };
    users.add(user);
    entries.push([user, hash]);
  }
  return { ok: true, entries };
}

/** The entries of `file`, or why it cannot be used. */
export function readHtpasswd(file: string): { ok: true; entries: HtpasswdEntries } | { ok: false; reason: string } {
  let text: string;
  try {
    const data = readFileSync(file);
    if (data.length > MAX_FILE_BYTES) return { ok: false, reason: `${file}: larger than ${MAX_FILE_BYTES} bytes` };
    text = data.toString('utf8');
  } catch (error) {
    return { ok: false, reason: `${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
  const parsed = parseHtpasswd(text);
  return parsed.ok ? parsed : { ok: false, reason: `${file}: ${parsed.reason}` };
}

/** Every htpasswd file the config's sites name, once each. */
export function htpasswdFiles(config: {
  readonly vhosts: readonly {
    readonly auth: { readonly htpasswdFile: string } | null;
    readonly routes: readonly { readonly auth: { readonly htpasswdFile: string } | null }[];
  }[];
}): string[] {
  const files = new Set<string>();
  for (const vhost of config.vhosts) {
    for (const site of [vhost, ...vhost.routes]) if (site.auth !== null) files.add(site.auth.htpasswdFile);
  }
  return [...files];
}
