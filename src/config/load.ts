/**
 * The one load path for `start`, `reload` and `check`:
 * read -> parse TOML -> interpolate ${VAR} (file.ts) -> included vhosts
 * (include.ts) -> validate (schema) -> compile (pure) -> freeze -> preflight
 * (the host: preflight/) -> upstream TLS files read (upstream-tls.ts).
 * Every problem becomes one line `FILE: key.path: what is wrong (line N)`.
 */
import type { z } from 'zod';
import { compile } from './compile.js';
import { BUILTIN_SOURCE, BUNDLED_SITE, interpolate, readConfigFile } from './file.js';
import { ineffectiveKeys } from './ineffective-keys.js';
import { keyPath } from './key-lines.js';
import { probeHost } from './preflight/host.js';
import { preflight, type PreflightPurpose } from './preflight/index.js';
import { type Expanded, expandIncludes, formatWithIncludes } from './include.js';
import type { ConfigProblem } from './problem.js';
import { configSchema } from './schema.js';
import { withUpstreamTls } from './upstream-tls.js';
import type { CompiledConfig } from './types.js';

export type LoadResult = { ok: true; config: CompiledConfig } | { ok: false; errors: string[] };

/**
 * The config in `file` (null: the built-in default), held against this host
 * for `purpose`; `false` skips the host checks (the CLI finding a running
 * master's pid file, which must work while the config is mid-edit).
 */
export function loadConfig(
  file: string | null,
  env: NodeJS.ProcessEnv = process.env,
  purpose: PreflightPurpose | false = 'check',
): LoadResult {
  try {
    if (file === null) return validate(builtinDefault(), BUILTIN_SOURCE, new Map(), purpose, NOTHING_INCLUDED);
    // A reload runs in the master: ${VAR} comes from its environment, and the problem says so.
    const source = purpose === 'reload' ? 'master' : 'shell';
    const read = readConfigFile(file, env, source);
    if (!read.ok) return read;
    const expanded = expandIncludes(file, read.document, env, source);
    if (expanded.errors.length > 0) return { ok: false, errors: [...expanded.errors] };
    return validate(expanded.document, file, read.lines, purpose, expanded, read.problems);
  } catch (error) {
    // Nothing in a file may take the load path down (a nesting deep enough to
    // exhaust the stack, say): it is one more problem of that file.
    return {
      ok: false,
      errors: [`${file ?? BUILTIN_SOURCE}: cannot be loaded: ${String((error as Error).message ?? error).split('\n')[0]}`],
    };
  }
}

const NOTHING_INCLUDED: Expanded = { document: null, included: [], errors: [], problems: [] };
/**
 * The same path for a document parsed elsewhere: a cluster's shared
 * configuration merged with this node's own file. Problems name key paths
 * (there are no lines to point at).
 */
export function loadConfigDocument(
  document: unknown,
  source: string,
  purpose: PreflightPurpose | false = 'check',
  env: NodeJS.ProcessEnv = process.env,
): LoadResult {
  const problems: ConfigProblem[] = [];
  const interpolated = interpolate(document, [], env, problems);
  const server = (interpolated as { server?: { include?: unknown } } | null)?.server;
  if (server?.include !== undefined) {
    // Refused, not ignored: a cluster shares [[vhosts]] through etcd, and a node's own files would make its sites differ.
    problems.push({ key: 'server.include', message: 'is not supported in a cluster: put the [[vhosts]] in the shared configuration' });
  }
  return validate(interpolated, source, new Map(), purpose, NOTHING_INCLUDED, problems);
}

function builtinDefault(): unknown {
  // Sandboxed like any other config: the bundled site is the workers' jail.
  return { process: { isolation: { chroot: BUNDLED_SITE } }, vhosts: [{ domains: ['*'], root: BUNDLED_SITE }] };
}

function validate(
  input: unknown,
  source: string,
  lines: Map<string, number>,
  purpose: PreflightPurpose | false,
  expanded: Expanded,
  earlier: ConfigProblem[] = [],
): LoadResult {
  const format = (problems: ConfigProblem[]): string[] => formatWithIncludes(source, lines, expanded, problems);
  const result = configSchema.safeParse(input);
  if (!result.success) {
    return { ok: false, errors: format([...earlier, ...zodProblems(result.error.issues)]) };
  }
  const { config, problems } = compile(result.data, source, probeHost());
  problems.push(...ineffectiveKeys(input, result.data));
  // Run even when compile refused the config: every problem of one run is reported together.
  // A key compile already refused is not judged again against the host (it saw a placeholder value).
  const refused = new Set(problems.map((problem) => problem.key));
  const hostProblems = purpose === false ? [] : preflight(config, purpose).filter((problem) => !refused.has(problem.key));
  const all = [...earlier, ...problems, ...hostProblems];
  if (all.length > 0 || expanded.problems.length > 0) return { ok: false, errors: format(all) };
  if (purpose === false) return { ok: true, config };
  // The files workers need the contents of (they never open root's files): read last, once the config is sound.
  const withTls = withUpstreamTls(config);
  if (!withTls.ok) return { ok: false, errors: format(withTls.problems) };
  return { ok: true, config: withTls.config };
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
    // A record key that fails its pattern: say what the pattern wants ("a 4xx or 5xx status").
    const message = issue.code === 'invalid_key' && issue.issues.length > 0 ? (issue.issues[0]?.message ?? issue.message) : issue.message;
    problems.push({ key: keyPath(at) || '(top level)', message: message.replace(/^Invalid input: /, '') });
  }
  return problems;
}
