/**
 * A problem with a config, wherever it was found (schema, compile,
 * preflight), and the one line it is printed as:
 * `FILE: key.path: what is wrong (line N)`.
 */

export interface ConfigProblem {
  /** Dotted key path, e.g. "security.limits.max_body_size" or "vhosts[0].root". */
  readonly key: string;
  readonly message: string;
}

/**
 * One line per problem, with the line of the key in the file when it is
 * known; a problem two passes see (an unset variable: interpolation and the
 * compiler) is said once.
 */
export function formatProblems(source: string, problems: readonly ConfigProblem[], lines: ReadonlyMap<string, number>): string[] {
  const formatted = problems.map(({ key, message }) => {
    const line = lineOf(key, lines);
    return `${source}: ${key}: ${message}${line === undefined ? '' : ` (line ${line})`}`;
  });
  return [...new Set(formatted)];
}

/** The line of the key itself, else of the closest enclosing key or table, else of its first sub-table ([a.b] for "a"). */
function lineOf(key: string, lines: ReadonlyMap<string, number>): number | undefined {
  if (!lines.has(key)) {
    let first: number | undefined;
    for (const [written, line] of lines)
      if ((written.startsWith(`${key}.`) || written.startsWith(`${key}[`)) && (first === undefined || line < first)) first = line;
    if (first !== undefined) return first;
  }
  let probe = key;
  for (;;) {
    const line = lines.get(probe);
    if (line !== undefined) return line;
    const cut = Math.max(probe.lastIndexOf('.'), probe.lastIndexOf('['));
    if (cut <= 0) return undefined;
    probe = probe.slice(0, cut);
  }
}
