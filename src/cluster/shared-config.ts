/**
 * The configuration the nodes share, and the part each keeps for itself.
 *
 *   shared      [[vhosts]], [security], [ssl]
 *   node-local  [server], [process], [cluster], and inside the shared
 *               sections the paths that name this machine's files:
 *               ssl.cert_dir, ssl.challenges.dns_01_command,
 *               security.audit.log_file, and manual certificates
 *               ([ssl.domains."name"] tables of files).
 *
 * A push stores the shared part as the operator wrote it, "${VAR}"
 * references included (each node fills them from its own environment, so a
 * credential never travels), sealed with the cluster's key. Its etcd
 * revision is the configuration's revision. A node runs
 *   its own file's node-local part + the latest shared part
 * through the same load path as `check` and `start`.
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { loadConfigDocument, type LoadResult } from '../config/load.js';
import type { PreflightPurpose } from '../config/preflight/index.js';

type Document = Record<string, unknown>;

export const SHARED_SECTIONS = ['vhosts', 'security', 'ssl'] as const;
const NODE_LOCAL_PATHS: readonly (readonly string[])[] = [
  ['ssl', 'cert_dir'],
  ['ssl', 'challenges', 'dns_01_command'],
  ['security', 'audit', 'log_file'],
];

/** What a push stores (sealed) under config/shared. */
export interface SharedRevision {
  readonly shared: Document;
  readonly pushedBy: string;
  readonly pushedAt: string;
  /** The file it came from, on the node that pushed it. */
  readonly file: string;
}

const isTable = (value: unknown): value is Document => value !== null && typeof value === 'object' && !Array.isArray(value);

function clone<T>(value: T): T {
  return structuredClone(value);
}

function getPath(document: Document, keys: readonly string[]): unknown {
  let at: unknown = document;
  for (const key of keys) {
    if (!isTable(at)) return undefined;
    at = at[key];
  }
  return at;
}

function setPath(document: Document, keys: readonly string[], value: unknown): void {
  let at = document;
  for (const key of keys.slice(0, -1)) {
    if (!isTable(at[key])) at[key] = {};
    at = at[key] as Document;
  }
  at[keys[keys.length - 1]!] = value;
}

function deletePath(document: Document, keys: readonly string[]): void {
  const parent = getPath(document, keys.slice(0, -1));
  if (isTable(parent)) delete parent[keys[keys.length - 1]!];
}

/** Manual certificates are files on each node: [ssl.domains."name"] tables, not a list of names. */
const manualCertificates = (document: Document): unknown => {
  const domains = getPath(document, ['ssl', 'domains']);
  return isTable(domains) ? domains : undefined;
};

/** The shared sections of `document`, without their node-local paths. */
export function sharedPart(document: Document): Document {
  const shared: Document = {};
  for (const section of SHARED_SECTIONS) if (document[section] !== undefined) shared[section] = clone(document[section]);
  for (const keys of NODE_LOCAL_PATHS) deletePath(shared, keys);
  if (manualCertificates(shared) !== undefined) deletePath(shared, ['ssl', 'domains']);
  return shared;
}

/** This node's document with the shared sections replaced by `shared` (node-local paths kept from this node's). */
export function mergeShared(local: Document, shared: Document | null): Document {
  if (shared === null) return clone(local);
  const merged: Document = {};
  for (const [key, value] of Object.entries(local)) if (!(SHARED_SECTIONS as readonly string[]).includes(key)) merged[key] = clone(value);
  for (const [key, value] of Object.entries(shared)) merged[key] = clone(value);
  for (const keys of NODE_LOCAL_PATHS) {
    const value = getPath(local, keys);
    // A node-local path of a section the cluster does not have would bring half a section back.
    if (value !== undefined && getPath(merged, keys.slice(0, 1)) !== undefined) setPath(merged, keys, clone(value));
  }
  const manual = manualCertificates(local);
  if (manual !== undefined && getPath(merged, ['ssl', 'domains']) === undefined) setPath(merged, ['ssl', 'domains'], clone(manual));
  return merged;
}

/** Reads and parses a TOML file; one line when it cannot. */
export function readDocument(file: string): { ok: true; document: Document } | { ok: false; problem: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { ok: false, problem: `${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
  try {
    return { ok: true, document: parseToml(text) as Document };
  } catch (error) {
    const e = error as { line?: number; column?: number; message?: string };
    const where = typeof e.line === 'number' ? `:${e.line}:${e.column ?? 1}` : '';
    return { ok: false, problem: `${file}${where}: syntax error: ${String(e.message ?? error).split('\n')[0]}` };
  }
}

/** This node's file merged with the shared revision, through the one load path (the preflight `check` runs). */
export function loadMerged(
  localFile: string,
  shared: SharedRevision | null,
  revision: string | null,
  purpose: PreflightPurpose,
): LoadResult {
  const local = readDocument(localFile);
  if (!local.ok) return { ok: false, errors: [local.problem] };
  const source = shared === null ? localFile : `${localFile} + cluster revision ${revision} (${shared.file} from ${shared.pushedBy})`;
  return loadConfigDocument(mergeShared(local.document, shared?.shared ?? null), source, purpose);
}

/** Parses what config/shared holds (after opening it), or null when it is not a revision. */
export function parseSharedRevision(text: string): SharedRevision | null {
  try {
    const value = JSON.parse(text) as Partial<SharedRevision>;
    if (
      !isTable(value.shared) ||
      typeof value.pushedBy !== 'string' ||
      typeof value.pushedAt !== 'string' ||
      typeof value.file !== 'string'
    )
      return null;
    return value as SharedRevision;
  } catch {
    return null;
  }
}
