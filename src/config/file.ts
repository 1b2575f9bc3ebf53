/**
 * A config file before validation: where it is, its TOML read with
 * file:line:column syntax errors, and ${VAR} references replaced from the
 * environment. Light on purpose (no schema): the CLI commands that only look
 * for a running master (status, stop, reload, ban, certs) read the file here.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { indexKeyLines, keyPath } from './key-lines.js';
import type { ConfigProblem } from './problem.js';

export const BUILTIN_SOURCE = '(built-in default)';

/** The page the built-in default serves, shipped with the package. */
export const BUNDLED_SITE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../share/www');

/** `-c FILE` if given, else ./miwidothttp.toml if it exists, else null (built-in default). */
export function resolveConfigPath(option: string | undefined): string | null {
  if (option !== undefined) return path.resolve(option);
  const local = path.resolve('miwidothttp.toml');
  return existsSync(local) ? local : null;
}

/**
 * The document in `file` with ${VAR} resolved from `env`, the line of each
 * key, and the variables that were not set (as problems of their keys); or
 * the one line saying why the file could not be read or parsed.
 */
export type ConfigDocument =
  | {
      ok: true;
      document: unknown;
      lines: Map<string, number>;
      problems: ConfigProblem[];
      /** The ${NAME}s the file refers to, set or not. */
      variables: string[];
    }
  | { ok: false; errors: string[] };

/**
 * Whose environment ${NAME} is read from: `check` and `start` read the
 * shell's; a reload is done by the running master, which reads its own, as
 * it was started (systemd: the unit's Environment= and EnvironmentFile=).
 * A variable exported in the shell afterwards is not seen by a reload.
 */
export type VariableSource = 'shell' | 'master';

const UNSET: Record<VariableSource, (name: string) => string> = {
  shell: (name) => `environment variable ${name} is not set`,
  master: (name) =>
    `environment variable ${name} is not set in the running master's environment (a reload reads the variables the master was started with; restart it to change them)`,
};

export function readConfigFile(file: string, env: NodeJS.ProcessEnv, source: VariableSource = 'shell'): ConfigDocument {
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
  const problems: ConfigProblem[] = [];
  const variables = new Set<string>();
  const document = interpolate(parsed, [], env, problems, source, variables);
  return { ok: true, document, lines: indexKeyLines(text), problems, variables: [...variables] };
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Replace ${NAME} in every string value; an unset variable is a problem naming the key. Names seen go into `variables`. */
export function interpolate(
  value: unknown,
  at: PropertyKey[],
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  source: VariableSource = 'shell',
  variables: Set<string> = new Set(),
): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (whole, name: string) => {
      variables.add(name);
      const found = env[name];
      if (found === undefined) {
        problems.push({ key: keyPath(at), message: UNSET[source](name) });
        return whole;
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, [...at, i], env, problems, source, variables));
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = interpolate(child, [...at, key], env, problems, source, variables);
    return out;
  }
  return value;
}
