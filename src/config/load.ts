/**
 * The one load path for `start`, `reload` and `check`:
 * read -> parse TOML -> interpolate ${VAR} -> validate (schema) -> compile -> freeze.
 * Every problem becomes one line `FILE: key.path: what is wrong (line N)`.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { configSchema } from './schema.js';
import { compile, type ConfigProblem } from './compile.js';
import { indexKeyLines, keyPath } from './key-lines.js';
import type { CompiledConfig } from './types.js';

export const BUILTIN_SOURCE = '(built-in default)';

/** The page the built-in default serves, shipped with the package. */
export const BUNDLED_SITE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../share/www');

export type LoadResult = { ok: true; config: CompiledConfig } | { ok: false; errors: string[] };

/** `-c FILE` if given, else ./miwidothttp.toml if it exists, else null (built-in default). */
export function resolveConfigPath(option: string | undefined): string | null {
  if (option !== undefined) return path.resolve(option);
  const local = path.resolve('miwidothttp.toml');
  return existsSync(local) ? local : null;
}

export function loadConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): LoadResult {
  if (file === null) return validate(builtinDefault(), BUILTIN_SOURCE, new Map());
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { ok: false, errors: [`${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`] };
  }
  let parsed: unknown;
  try {
    parsed = parseToml(text);
  } catch (error) {
    // smol-toml's errors carry 1-based line and column and a first line of
    // "Invalid TOML document: <reason>"; anything else (a stack overflow on a
    // pathological nesting) is still a syntax error of this file, in one line.
    const e = error as { line?: number; column?: number; message?: string };
    const where = typeof e.line === 'number' ? `:${e.line}:${e.column ?? 1}` : '';
    const reason = String(e.message ?? error)
      .split('\n')[0]!
      .replace(/^Invalid TOML document: /, '');
    return { ok: false, errors: [`${file}${where}: syntax error: ${reason}`] };
  }
  const lines = indexKeyLines(text);
  const problems: ConfigProblem[] = [];
  const interpolated = interpolate(parsed, [], env, problems);
  return validate(interpolated, file, lines, problems);
}

/**
 * The same path for a document parsed elsewhere: a cluster's shared
 * configuration merged with this node's own file. Problems name key paths
 * (there are no lines to point at).
 */
export function loadConfigDocument(document: unknown, source: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  const problems: ConfigProblem[] = [];
  const interpolated = interpolate(document, [], env, problems);
  return validate(interpolated, source, new Map(), problems);
}

function builtinDefault(): unknown {
  // Sandboxed like any other config: the bundled site is the workers' jail.
  return { process: { isolation: { chroot: BUNDLED_SITE } }, vhosts: [{ domains: ['*'], root: BUNDLED_SITE }] };
}

function validate(input: unknown, source: string, lines: Map<string, number>, earlier: ConfigProblem[] = []): LoadResult {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    return { ok: false, errors: format(source, [...earlier, ...zodProblems(result.error.issues)], lines) };
  }
  const { config, problems } = compile(result.data, source);
  if (!config || earlier.length > 0) return { ok: false, errors: format(source, [...earlier, ...problems], lines) };
  return { ok: true, config };
}

function zodProblems(issues: readonly z.core.$ZodIssue[], base: readonly PropertyKey[] = []): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const at = [...base, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push({ key: keyPath([...at, key]), message: 'unknown key' });
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the problems of the alternatives the value had the right type
      // for (a table given where a table or an array is allowed, say), not a
      // bare "invalid input".
      const fitting = issue.errors.filter((branch) => !branch.some((inner) => inner.code === 'invalid_type' && inner.path.length === 0));
      if (fitting.length > 0) {
        problems.push(...fitting.flatMap((branch) => zodProblems(branch, at)));
        continue;
      }
    }
    problems.push({ key: keyPath(at) || '(top level)', message: issue.message.replace(/^Invalid input: /, '') });
  }
  return problems;
}

function format(source: string, problems: readonly ConfigProblem[], lines: Map<string, number>): string[] {
  return problems.map(({ key, message }) => {
    const line = lineOf(key, lines);
    return `${source}: ${key}: ${message}${line === undefined ? '' : ` (line ${line})`}`;
  });
}

/** The line of the key itself, else of the closest enclosing key or table. */
function lineOf(key: string, lines: Map<string, number>): number | undefined {
  let probe = key;
  for (;;) {
    const line = lines.get(probe);
    if (line !== undefined) return line;
    const cut = Math.max(probe.lastIndexOf('.'), probe.lastIndexOf('['));
    if (cut <= 0) return undefined;
    probe = probe.slice(0, cut);
  }
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Replace ${NAME} in every string value; an unset variable is a problem naming the key. */
function interpolate(value: unknown, at: PropertyKey[], env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (whole, name: string) => {
      const found = env[name];
      if (found === undefined) {
        problems.push({ key: keyPath(at), message: `environment variable ${name} is not set` });
        return whole;
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, [...at, i], env, problems));
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = interpolate(child, [...at, key], env, problems);
    return out;
  }
  return value;
}
