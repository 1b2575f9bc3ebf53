/**
 * The ACME account, kept in the root-only cert_dir so that every renewal
 * uses the same account (CAs rate-limit new accounts, and an operator wants
 * one account per CA to look up): its private key and the account URL the
 * CA gave, one directory per directory URL, so pointing acme_server at
 * another CA (or staging) makes a new account there instead of presenting
 * one CA's key to another.
 *
 *   <cert_dir>/acme-accounts/<ca host>-<sha256(directory URL), 12 hex>/
 *     account.key   PKCS#8 PEM, 0600
 *     account.json  {"directoryUrl": ..., "accountUrl": ...}, 0600
 *
 * Directories are 0700. Every file is written whole to a temporary file,
 * flushed, and renamed over the old one, so a crash leaves the old file or
 * the new one, never half a key.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writePrivateFile } from '../../fs/private-file.js';
import { IssuanceError } from './types.js';

export const ACCOUNTS_DIR = 'acme-accounts';
const KEY_FILE = 'account.key';
const META_FILE = 'account.json';

export interface StoredAccount {
  readonly keyPem: string;
  /** Null when the key was written but the CA's answer was not (a crash in between): the CA finds the account by its key. */
  readonly accountUrl: string | null;
}

/** The folder that holds the account for `directoryUrl` under `accountDir`. */
export function accountFolder(accountDir: string, directoryUrl: string): string {
  return path.join(accountDir, ACCOUNTS_DIR, caKey(directoryUrl));
}

/** A file name for one CA: "<host>-<sha256(directory URL), 12 hex>" (its accounts and its certificates are kept apart from another's). */
export function caKey(directoryUrl: string): string {
  let host = 'ca';
  try {
    host = new URL(directoryUrl).host.toLowerCase().replace(/[^a-z0-9.-]/g, '_');
  } catch {
    // Not a URL: acme-client will say so when it is used; the hash still keys the folder.
  }
  return `${host}-${createHash('sha256').update(directoryUrl).digest('hex').slice(0, 12)}`;
}

export class AccountStore {
  readonly folder: string;

  constructor(
    accountDir: string,
    private readonly directoryUrl: string,
  ) {
    this.folder = accountFolder(accountDir, directoryUrl);
  }

  /** The persisted account, or null when there is none for this CA yet. */
  load(): StoredAccount | null {
    const keyFile = path.join(this.folder, KEY_FILE);
    let keyPem: string;
    try {
      checkPrivateFile(keyFile);
      keyPem = readFileSync(keyFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      if (error instanceof IssuanceError) throw error;
      throw new IssuanceError(`cannot read the ACME account key ${keyFile}: ${(error as Error).message}`);
    }
    return { keyPem, accountUrl: this.#loadAccountUrl() };
  }

  saveKey(keyPem: string): void {
    this.#write(KEY_FILE, keyPem);
  }

  saveAccountUrl(accountUrl: string): void {
    this.#write(META_FILE, `${JSON.stringify({ directoryUrl: this.directoryUrl, accountUrl }, null, 1)}\n`);
  }

  #loadAccountUrl(): string | null {
    const metaFile = path.join(this.folder, META_FILE);
    let text: string;
    try {
      text = readFileSync(metaFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new IssuanceError(`cannot read ${metaFile}: ${(error as Error).message}`);
    }
    let meta: unknown;
    try {
      meta = JSON.parse(text);
    } catch {
      throw new IssuanceError(`${metaFile} is not JSON: move it aside and the account is looked up by its key`);
    }
    const record = meta as { directoryUrl?: unknown; accountUrl?: unknown } | null;
    // A folder copied from another CA's (or a hash collision) must not send this CA another's account URL.
    if (record === null || typeof record !== 'object' || record.directoryUrl !== this.directoryUrl) {
      throw new IssuanceError(`${metaFile} is for another ACME directory than ${this.directoryUrl}`);
    }
    return typeof record.accountUrl === 'string' && record.accountUrl.startsWith('https://') ? record.accountUrl : null;
  }

  #write(name: string, body: string): void {
    const file = path.join(this.folder, name);
    try {
      mkdirSync(this.folder, { recursive: true, mode: 0o700 });
      writePrivateFile(file, body);
    } catch (error) {
      throw new IssuanceError(`cannot write ${file}: ${(error as Error).message}`);
    }
  }
}

/**
 * The account key is the account: a copy is someone else's account at the
 * CA (they could revoke our certificates). Refuse one that is a link, not
 * ours, or readable by others, rather than use it.
 */
function checkPrivateFile(file: string): void {
  const stat = lstatSync(file);
  if (!stat.isFile()) throw new IssuanceError(`${file} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid)
    throw new IssuanceError(`${file} belongs to uid ${stat.uid}, not to this process (uid ${uid})`);
  if ((stat.mode & 0o077) !== 0) {
    throw new IssuanceError(`${file} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)}): chmod 600 it`);
  }
}
