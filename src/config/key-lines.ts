/**
 * Where each key of a TOML document is written, so a validation problem can
 * name its line. The TOML parser gives positions only for syntax errors; this
 * scan follows table headers, arrays of tables and (dotted) keys, which is
 * all a config file uses. It only runs on text the parser has accepted.
 */
/** Render a key path the way it is written in TOML: a.b[0]."odd.key". */
export function keyPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else {
      const name = String(segment);
      const bare = /^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name);
      out += out === '' ? bare : `.${bare}`;
    }
  }
  return out;
}

/** Split `a."b.c".d` into its segments. */
function splitDotted(text: string): string[] {
  const segments: string[] = [];
  const pattern = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let match: RegExpExecArray | null;
  while (pattern.lastIndex < text.length && (match = pattern.exec(text)) !== null) {
    segments.push(match[1] !== undefined ? JSON.parse(`"${match[1]}"`) : (match[2] ?? match[3] ?? ''));
    if (match[4] === '') break;
  }
  return segments;
}

export function indexKeyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  let table: PropertyKey[] = [];
  let inMultiline = false;

  /** Re-express a header path with the current index of every array of tables in it. */
  const withIndexes = (segments: string[]): PropertyKey[] => {
    const out: PropertyKey[] = [];
    for (const segment of segments) {
      out.push(segment);
      const count = arrayCounts.get(keyPath(out));
      if (count !== undefined) out.push(count - 1);
    }
    return out;
  };

  text.split('\n').forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    const quotes = (raw.match(/"""|'''/g) ?? []).length;
    if (inMultiline) {
      if (quotes % 2 === 1) inMultiline = false;
      return;
    }
    if (quotes % 2 === 1) inMultiline = true;
    if (line === '' || line.startsWith('#')) return;

    const arrayHeader = /^\[\[(.+)\]\]/.exec(line);
    if (arrayHeader) {
      const segments = splitDotted(arrayHeader[1]!);
      const parent = withIndexes(segments.slice(0, -1));
      const base = keyPath([...parent, segments.at(-1)!]);
      const count = (arrayCounts.get(base) ?? 0) + 1;
      arrayCounts.set(base, count);
      table = [...parent, segments.at(-1)!, count - 1];
      if (!lines.has(base)) lines.set(base, lineNo);
      lines.set(keyPath(table), lineNo);
      return;
    }
    const header = /^\[(.+)\]/.exec(line);
    if (header) {
      table = withIndexes(splitDotted(header[1]!));
      lines.set(keyPath(table), lineNo);
      return;
    }
    const assignment = /^((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\s-])+?)\s*=/.exec(line);
    if (assignment) lines.set(keyPath([...table, ...splitDotted(assignment[1]!)]), lineNo);
  });
  return lines;
}
