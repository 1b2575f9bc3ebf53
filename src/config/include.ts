/**
 * [server] include = ["sites/*.toml"]: files of [[vhosts]] tables, named by
 * globs relative to the including file (nginx's include, Caddy's import),
 * appended to the main file's vhosts in order: the main file's first, then
 * each pattern's matches sorted by name. A problem in an included vhost is
 * reported against that file and its own line.
 *
 * Included files hold [[vhosts]] only: a [server] or [security] table there
 * would let a site's file change what every site gets, and nothing may be
 * included twice or from an included file (no include cycles to follow).
 */
import { globSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { readConfigFile, type VariableSource } from './file.js';
import type { ConfigProblem } from './problem.js';
import { formatProblems } from './problem.js';

/** Files one config may include: a site per file, for a large host. */
const MAX_INCLUDED_FILES = 1000;

/** The vhosts of one included file, at their place among all vhosts. */
interface IncludedVhosts {
  readonly file: string;
  /** Index of its first vhost among all of them. */
  readonly first: number;
  readonly count: number;
  readonly lines: ReadonlyMap<string, number>;
}

/** Problems found before validation, already tied to their file. */
interface FileProblem {
  readonly file: string;
  readonly lines: ReadonlyMap<string, number>;
  readonly problem: ConfigProblem;
}

export interface Expanded {
  /** The main document with the included vhosts appended. */
  readonly document: unknown;
  readonly included: readonly IncludedVhosts[];
  /** Files that could not be read or parsed: one line each, the config is refused. */
  readonly errors: readonly string[];
  /** Problems of the included files' own (an unset ${VAR}, a table other than [[vhosts]]). */
  readonly problems: readonly FileProblem[];
}

const GLOB = /[*?[\]{}]/;

const isTable = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);

/** The files `patterns` name, relative to `baseDir`: each glob's matches sorted, a plain name as it is. */
function matches(patterns: readonly string[], baseDir: string): string[] {
  const files: string[] = [];
  for (const pattern of patterns) {
    if (!GLOB.test(pattern)) {
      // A plain name must exist (nginx fails on a missing include); a glob may match nothing (a sites directory still empty).
      files.push(path.resolve(baseDir, pattern));
      continue;
    }
    const found = globSync(pattern, { cwd: baseDir })
      .map((name) => path.resolve(baseDir, name))
      .sort();
    files.push(...found);
  }
  return files;
}

/** `document` (parsed from `mainFile`) with the vhosts of every file its [server] include names. */
export function expandIncludes(mainFile: string, document: unknown, env: NodeJS.ProcessEnv, source: VariableSource = 'shell'): Expanded {
  const server = isTable(document) ? document.server : undefined;
  const patterns = isTable(server) ? server.include : undefined;
  // Not a list of strings: the schema names the problem.
  if (!Array.isArray(patterns) || !patterns.every((pattern) => typeof pattern === 'string') || !isTable(document)) {
    return { document, included: [], errors: [], problems: [] };
  }
  const baseDir = path.dirname(mainFile);
  const files = matches(patterns, baseDir);
  const errors: string[] = [];
  const problems: FileProblem[] = [];
  const included: IncludedVhosts[] = [];
  const own = Array.isArray(document.vhosts) ? document.vhosts : document.vhosts === undefined ? [] : null;
  if (own === null) return { document, included, errors, problems }; // the schema names it
  const vhosts: unknown[] = [...own];
  const seen = new Set<string>([realOrSame(mainFile)]);
  if (files.length > MAX_INCLUDED_FILES) {
    errors.push(`${mainFile}: server.include: names ${files.length} files; at most ${MAX_INCLUDED_FILES} may be included`);
    return { document, included, errors, problems };
  }
  for (const file of files) {
    const real = realOrSame(file);
    if (seen.has(real)) continue;
    seen.add(real);
    const read = readConfigFile(file, env, source);
    if (!read.ok) {
      errors.push(...read.errors);
      continue;
    }
    for (const problem of read.problems) problems.push({ file, lines: read.lines, problem });
    const content = read.document;
    if (!isTable(content)) continue;
    for (const key of Object.keys(content)) {
      if (key === 'vhosts') continue;
      problems.push({
        file,
        lines: read.lines,
        problem: { key, message: 'an included file holds [[vhosts]] tables only; server-wide settings belong in the main file' },
      });
    }
    const list = content.vhosts;
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      problems.push({ file, lines: read.lines, problem: { key: 'vhosts', message: 'must be [[vhosts]] tables' } });
      continue;
    }
    included.push({ file, first: vhosts.length, count: list.length, lines: read.lines });
    vhosts.push(...list);
  }
  return { document: { ...document, vhosts }, included, errors, problems };
}

function realOrSame(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

const VHOST_KEY = /^vhosts\[(\d+)\](.*)$/s;

/**
 * One line per problem, as formatProblems writes them, with each problem of
 * an included vhost against its own file, key and line; a vhost another
 * message names is named by its file too.
 */
export function formatWithIncludes(
  source: string,
  lines: ReadonlyMap<string, number>,
  expanded: Pick<Expanded, 'included' | 'problems'>,
  problems: readonly ConfigProblem[],
): string[] {
  const { included } = expanded;
  const owner = (index: number): IncludedVhosts | undefined =>
    included.find((entry) => index >= entry.first && index < entry.first + entry.count);
  const name = (index: number): string => {
    const entry = owner(index);
    return entry === undefined ? `vhosts[${index}]` : `vhosts[${index - entry.first}] of ${entry.file}`;
  };
  const out: string[] = [];
  for (const { file, lines: fileLines, problem } of expanded.problems) out.push(...formatProblems(file, [problem], fileLines));
  for (const problem of problems) {
    const match = VHOST_KEY.exec(problem.key);
    const entry = match === null ? undefined : owner(Number(match[1]));
    const message = problem.message.replace(/vhosts\[(\d+)\]/g, (_, index: string) => name(Number(index)));
    if (match === null || entry === undefined) {
      out.push(...formatProblems(source, [{ key: problem.key, message }], lines));
      continue;
    }
    const key = `vhosts[${Number(match[1]) - entry.first}]${match[2]}`;
    out.push(...formatProblems(entry.file, [{ key, message }], entry.lines));
  }
  return [...new Set(out)];
}
