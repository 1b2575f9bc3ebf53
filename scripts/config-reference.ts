/**
 * docs/config.md, generated: every key of the config language with its
 * type, its default and what it does. Keys, types and defaults come from the
 * schema the server runs on (src/config/schema.ts, walked at run time); what
 * each key does comes from the comment beside it in that file (read with the
 * TypeScript parser), so a key is documented where it is defined, once.
 * test/unit/config-reference.test.ts fails when a key has no comment or the
 * file is not what this writes.
 *
 *   npm run docs:config     rewrites docs/config.md
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { z } from 'zod';
import { configSchema } from '../src/config/schema.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCHEMA_SOURCE = path.join(ROOT, 'src/config/schema.ts');
export const REFERENCE_FILE = path.join(ROOT, 'docs/config.md');

/** One key as the reference lists it. */
export interface KeyReference {
  /** "server.http_port", "vhosts[].backend.target (proxy)", 'ssl.domains."name".cert_file'. */
  readonly key: string;
  /** The table it belongs to, as TOML writes it: "[server]", "[[vhosts]]". */
  readonly table: string;
  readonly type: string;
  /** TOML text, or "" when the key has none (it is required, or its absence means something the description says). */
  readonly defaultValue: string;
  readonly description: string | null;
}

// ---------------------------------------------------------------------------
// The runtime schema: keys, types, defaults

type Schema = z.core.$ZodType;
interface Def {
  type: string;
  innerType?: Schema;
  defaultValue?: unknown;
  shape?: Record<string, Schema>;
  element?: Schema;
  valueType?: Schema;
  options?: Schema[];
  entries?: Record<string, string>;
  values?: unknown[];
  checks?: { _zod: { def: Record<string, unknown> } }[];
  format?: string;
}
const defOf = (schema: Schema): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** The schema under default/prefault/optional wrappers, and the default they give. */
function unwrap(schema: Schema): { inner: Schema; defaultValue: unknown; hasDefault: boolean } {
  let inner = schema;
  let defaultValue: unknown;
  let hasDefault = false;
  for (;;) {
    const def = defOf(inner);
    if (def.type === 'default' || def.type === 'prefault') {
      if (!hasDefault) {
        defaultValue = typeof def.defaultValue === 'function' ? (def.defaultValue as () => unknown)() : def.defaultValue;
        hasDefault = def.type === 'default';
      }
      inner = def.innerType!;
    } else if (def.type === 'optional' || def.type === 'nullable') {
      inner = def.innerType!;
    } else {
      return { inner, defaultValue, hasDefault };
    }
  }
}

const isTable = (schema: Schema): boolean => defOf(unwrap(schema).inner).type === 'object';
/** `z.record(name, table)`: tables by name, as [ssl.domains."example.com"]. */
const isTableOfTables = (schema: Schema): boolean => defOf(schema).type === 'record' && isTable(defOf(schema).valueType!);

/** A discriminated union of tables by their `type` (a vhost's backend): the variants by name. */
function variantsOf(schema: Schema): [string, Schema][] | null {
  const def = defOf(schema);
  if (def.type !== 'union' || !def.options?.every((option) => defOf(option).type === 'object')) return null;
  const variants: [string, Schema][] = [];
  for (const option of def.options) {
    const discriminator = defOf(option).shape?.type;
    const values = discriminator === undefined ? undefined : defOf(discriminator).values;
    if (values?.length !== 1) return null;
    variants.push([String(values[0]), option]);
  }
  return variants;
}

function numberType(def: Def): string {
  let integer = false;
  const bounds: string[] = [];
  let min: { value: number; inclusive: boolean } | undefined;
  let max: { value: number; inclusive: boolean } | undefined;
  for (const check of def.checks ?? []) {
    const c = check._zod.def;
    if (c.check === 'number_format' && (c.format === 'safeint' || c.format === 'int32')) integer = true;
    if (c.check === 'greater_than') min = { value: c.value as number, inclusive: c.inclusive === true };
    if (c.check === 'less_than') max = { value: c.value as number, inclusive: c.inclusive === true };
  }
  if (min?.inclusive && max?.inclusive) bounds.push(`${min.value}–${max.value}`);
  else {
    if (min !== undefined) bounds.push(`${min.inclusive ? '≥' : '>'} ${min.value}`);
    if (max !== undefined) bounds.push(`${max.inclusive ? '≤' : '<'} ${max.value}`);
  }
  return `${integer ? 'integer' : 'number'}${bounds.length === 0 ? '' : ` ${bounds.join(', ')}`}`;
}

function stringType(def: Def): string {
  if (def.format === 'url') return 'URL';
  if (def.format === 'email') return 'e-mail address';
  for (const check of def.checks ?? []) {
    const c = check._zod.def;
    if (c.format === 'starts_with' && c.prefix === '/') return 'absolute path';
    if (c.format === 'url') return 'URL';
    if (c.format === 'email') return 'e-mail address';
  }
  return 'string';
}

/** What a leaf holds, in words. */
function typeOf(schema: Schema): string {
  const def = defOf(unwrap(schema).inner);
  switch (def.type) {
    case 'boolean':
      return 'boolean';
    case 'number':
      return numberType(def);
    case 'string':
      return stringType(def);
    case 'enum':
      return Object.values(def.entries ?? {})
        .map((value) => JSON.stringify(value))
        .join(' | ');
    case 'literal':
      return (def.values ?? []).map((value) => JSON.stringify(value)).join(' | ');
    case 'array':
      return `list of ${typeOf(def.element!)}`;
    case 'record':
      return isTable(def.valueType!) ? 'tables by name (below)' : `table of name → ${typeOf(def.valueType!)}`;
    case 'union': {
      const options = def.options ?? [];
      // "512M" or a number of bytes.
      if (options.some((option) => defOf(option).type === 'number') && options.some((option) => defOf(option).type === 'string'))
        return 'size: bytes, or "512M" (K, M, G, T)';
      return options.map((option) => typeOf(option)).join(' | ');
    }
    default:
      return def.type;
  }
}

/** A default as TOML writes it. */
function tomlValue(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (value !== null && typeof value === 'object') return Object.keys(value).length === 0 ? '{}' : JSON.stringify(value);
  return String(value);
}

interface Leaf {
  readonly path: readonly string[];
  readonly table: string;
  readonly schema: Schema;
  readonly variant: string | null;
}

/** Every leaf key below `schema` (a table), depth first in schema order. */
function leaves(schema: Schema, at: string[], table: string, variant: string | null, out: Leaf[]): void {
  const def = defOf(unwrap(schema).inner);
  for (const [key, child] of Object.entries(def.shape ?? {})) {
    const path = [...at, key];
    const inner = unwrap(child).inner;
    const innerDef = defOf(inner);
    const variants = variantsOf(inner);
    if (innerDef.type === 'object') {
      leaves(inner, path, tableName(path, false), null, out);
    } else if (innerDef.type === 'array' && isTable(innerDef.element!)) {
      leaves(innerDef.element!, [...path, '[]'], tableName(path, true), null, out);
    } else if (variants !== null) {
      for (const [name, option] of variants) leaves(option, path, tableName(path, false), name, out);
    } else if (innerDef.type === 'union' && innerDef.options?.some(isTableOfTables)) {
      // A list or a table of tables (ssl.domains): the list is the key; the tables are described below it.
      out.push({ path, table, schema: child, variant });
      for (const option of innerDef.options.filter(isTableOfTables)) {
        leaves(defOf(option).valueType!, [...path, '"name"'], tableName([...path, '"name"'], false), null, out);
      }
    } else if (innerDef.type === 'record' && isTable(innerDef.valueType!)) {
      leaves(innerDef.valueType!, [...path, '"name"'], tableName([...path, '"name"'], false), null, out);
    } else {
      out.push({ path, table, schema: child, variant });
    }
  }
}

/** "[server.metrics]", "[[vhosts]]", "[vhosts.backend]". */
function tableName(path: readonly string[], arrayOfTables: boolean): string {
  const name = path.filter((part) => part !== '[]').join('.');
  return arrayOfTables ? `[[${name}]]` : `[${name}]`;
}

// ---------------------------------------------------------------------------
// The source: the comment beside each key

const sourceFile = (): ts.SourceFile =>
  ts.createSourceFile(SCHEMA_SOURCE, readFileSync(SCHEMA_SOURCE, 'utf8'), ts.ScriptTarget.Latest, true);

/** The text of the /** comment right before `node`, or null. */
function docComment(node: ts.Node, source: ts.SourceFile): string | null {
  const ranges = ts.getLeadingCommentRanges(source.text, node.getFullStart()) ?? [];
  const doc = ranges.reverse().find((range) => source.text.startsWith('/**', range.pos));
  if (doc === undefined) return null;
  return source.text
    .slice(doc.pos + 3, doc.end - 2)
    .split('\n')
    .map((line) => line.replace(/^\s*\*\s?/, '').trim())
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim();
}

interface Property {
  readonly node: ts.Node;
  readonly initializer: ts.Expression;
}

class SchemaSource {
  readonly #source = sourceFile();
  readonly #consts = new Map<string, ts.Expression>();

  constructor() {
    for (const statement of this.#source.statements) {
      if (!ts.isVariableStatement(statement)) continue;
      for (const declaration of statement.declarationList.declarations) {
        if (ts.isIdentifier(declaration.name) && declaration.initializer !== undefined)
          this.#consts.set(declaration.name.text, declaration.initializer);
      }
    }
  }

  /**
   * The object literals (one per variant) a schema expression builds its
   * table from: z.strictObject({...}) through .default()/.prefault()/
   * .optional()/.partial(), z.array(), z.record(), unions, and consts.
   */
  tablesOf(expression: ts.Expression): ts.ObjectLiteralExpression[] {
    if (ts.isObjectLiteralExpression(expression)) return [expression];
    if (ts.isIdentifier(expression)) {
      const value = this.#consts.get(expression.text);
      return value === undefined ? [] : this.tablesOf(value);
    }
    if (ts.isParenthesizedExpression(expression) || ts.isAsExpression(expression)) return this.tablesOf(expression.expression);
    if (ts.isArrayLiteralExpression(expression)) return expression.elements.flatMap((element) => this.tablesOf(element));
    if (ts.isCallExpression(expression)) {
      const callee = expression.expression;
      if (ts.isPropertyAccessExpression(callee)) {
        if (ts.isIdentifier(callee.expression) && callee.expression.text === 'z') {
          // z.strictObject(shape), z.array(element), z.record(key, value), z.union([...]), z.discriminatedUnion(key, [...])
          const last = expression.arguments[expression.arguments.length - 1];
          return last === undefined ? [] : this.tablesOf(last);
        }
        // .default(), .prefault(), .optional(), .partial(), .min(), ...: the table of what it is called on.
        return this.tablesOf(callee.expression);
      }
    }
    return [];
  }

  /** The configSchema's table. */
  get root(): ts.ObjectLiteralExpression[] {
    return this.tablesOf(this.#consts.get('configSchema')!);
  }

  /**
   * The property `key` of the tables (the variant's table when `variant`
   * names one): its node, which carries the comment, and the expression it
   * is built from (`limits,` in shorthand is the const `limits`).
   */
  property(tables: readonly ts.ObjectLiteralExpression[], key: string, variant: string | null): Property | null {
    for (const table of tables) {
      if (variant !== null && !this.isVariant(table, variant)) continue;
      for (const property of table.properties) {
        if (ts.isPropertyAssignment(property) && property.name.getText(this.#source).replace(/['"]/g, '') === key)
          return { node: property, initializer: property.initializer };
        if (ts.isShorthandPropertyAssignment(property) && property.name.text === key) return { node: property, initializer: property.name };
        // `...siteFields`: the keys of the spread table, with their own comments.
        if (ts.isSpreadAssignment(property)) {
          const spread = this.property(this.tablesOf(property.expression), key, variant);
          if (spread !== null) return spread;
        }
      }
    }
    return null;
  }

  isVariant(table: ts.ObjectLiteralExpression, variant: string): boolean {
    const type = this.property([table], 'type', null);
    return type?.initializer.getText(this.#source).includes(`'${variant}'`) === true;
  }

  /** The comment of a property; for `name: fields.name.default(...)`, the comment of `fields`'s `name`. */
  comment(property: Property): string | null {
    const own = docComment(property.node, this.#source);
    if (own !== null) return own;
    let expression: ts.Expression = property.initializer;
    while (ts.isCallExpression(expression) && ts.isPropertyAccessExpression(expression.expression))
      expression = expression.expression.expression;
    if (ts.isPropertyAccessExpression(expression)) {
      const referenced = this.property(this.tablesOf(expression.expression), expression.name.text, null);
      if (referenced !== null) return docComment(referenced.node, this.#source);
    }
    return null;
  }

  /** The comment of the key at `path` (parts "[]" and '"name"' step into arrays and tables of tables). */
  describe(path: readonly string[], variant: string | null): string | null {
    let tables = this.root;
    const parts = path.filter((part) => part !== '[]' && part !== '"name"');
    for (const [i, part] of parts.entries()) {
      const last = i === parts.length - 1;
      const property = this.property(tables, part, last ? variant : null);
      if (property === null) return null;
      if (last) return this.comment(property);
      tables = this.tablesOf(property.initializer);
    }
    return null;
  }
}

// ---------------------------------------------------------------------------

/** Every key, in schema order. */
export function configReference(): KeyReference[] {
  const found: Leaf[] = [];
  leaves(configSchema as unknown as Schema, [], '(top level)', null, found);
  const source = new SchemaSource();
  return found.map((leaf) => {
    const { defaultValue, hasDefault } = unwrap(leaf.schema);
    const key = leaf.path.join('.').replaceAll('.[]', '[]') + (leaf.variant === null ? '' : ` (${leaf.variant})`);
    return {
      key,
      table: leaf.table,
      type: leaf.path[leaf.path.length - 1] === 'type' && leaf.variant !== null ? JSON.stringify(leaf.variant) : typeOf(leaf.schema),
      defaultValue: hasDefault ? tomlValue(defaultValue) : '',
      description: source.describe(leaf.path, leaf.variant),
    };
  });
}

const escapeCell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function renderConfigReference(): string {
  const lines = [
    '# Configuration reference',
    '',
    'Every key of the TOML config, with its type, its default and what it',
    'does. Generated from `src/config/schema.ts` by `npm run docs:config`',
    '(`scripts/config-reference.ts`); `test/unit/config-reference.test.ts`',
    'fails when this file and the schema disagree, or a key is undocumented.',
    '',
    'A key is implemented or refused with one line: a key set to something',
    'other than its default while its feature is off is refused, naming the',
    'switch it waits for (unless the file writes that switch off on purpose),',
    'and values that would weaken a defence are refused with the reason.',
    '`${NAME}` in a string is replaced from the environment: `check` and',
    "`start` read the shell's, a reload reads the running master's (as it was",
    'started). Relative paths are relative to where the command runs. No',
    'default means the key is required where its table is used, or that its',
    'absence means what the description says.',
  ];
  let table = '';
  for (const entry of configReference()) {
    if (entry.table !== table) {
      table = entry.table;
      lines.push('', `## \`${table}\``, '', '| key | type | default | what it does |', '|---|---|---|---|');
    }
    const keyCell = `\`${entry.key}\``;
    const defaultCell = entry.defaultValue === '' ? '' : `\`${escapeCell(entry.defaultValue)}\``;
    lines.push(`| ${keyCell} | ${escapeCell(entry.type)} | ${defaultCell} | ${escapeCell(entry.description ?? '')} |`);
  }
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  writeFileSync(REFERENCE_FILE, renderConfigReference());
  const missing = configReference().filter((entry) => entry.description === null);
  process.stdout.write(`${path.relative(ROOT, REFERENCE_FILE)}: written\n`);
  for (const entry of missing) process.stdout.write(`undocumented: ${entry.key}\n`);
}
