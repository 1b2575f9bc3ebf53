/**
 * One file over 400 lines: the SQL tokenizer and the rules that read its tokens are one grammar, and the word tables are half of it.
 *
 * SQL injection detection by tokenizing, in the manner of libinjection
 * (N. Galbreath, Black Hat USA 2012): the input is read the way a SQL
 * lexer would read it in each quoting context it could have been pasted
 * into — as-is (a number or identifier), after a single quote, after a
 * double quote — and the shape of the resulting token stream decides, not
 * the presence of keywords. Natural language tokenizes into shapes no
 * injection has: "select the best union jobs" is a keyword and barewords,
 * "O'Reilly" a string next to a bareword, "1 and 2" a number, a logic
 * operator and a number. An injection has to break out of its context and
 * then say something: a closed string followed by a logic operator and a
 * comparison, UNION followed by a column list, a semicolon followed by a
 * whole statement, a time or error function, a comment cutting the query.
 *
 * The token classes, folding and rules here are our own; libinjection's
 * fingerprint database is not used. MySQL's lexical rules are followed
 * where dialects differ ("#" comments, "/*!" executable comments, "\"
 * escapes), since MySQL accepts the widest set of tricks.
 */

/**
 * Token classes, one character each so that a token stream reads as a
 * short string ("s&n=n" is: string, logic operator, number, comparison,
 * number) that anchored rules can match.
 */
type TokenType =
  | 's' // string literal
  | 'n' // number, NULL, TRUE, FALSE
  | 'b' // bareword: identifier or any other word
  | 'v' // variable: @x, @@x
  | 'F' // call of a function only an attack needs (SLEEP, BENCHMARK, LOAD_FILE, EXTRACTVALUE, ...)
  | 'g' // call of an ordinary SQL function (CHAR, CONCAT, SUBSTRING, VERSION, ...)
  | 'f' // call of any other name: "word("
  | 'S' // SELECT
  | 'E' // other statement keywords: INSERT, UPDATE, DROP, EXEC, DECLARE, ...
  | 'U' // UNION [ALL|DISTINCT]
  | 'O' // ORDER BY, GROUP BY
  | 'H' // HAVING
  | 'W' // WAITFOR
  | '&' // logic operator: AND, OR, XOR, &&, ||
  | '=' // comparison: = < > <= >= <> != <=> LIKE RLIKE REGEXP IN( IS NULL BETWEEN
  | 'o' // arithmetic or unary operator: + - * / % ^ | & ~ ! NOT DIV MOD
  | 'c' // comment that cuts the rest of a line or of the input: -- # unclosed /*
  | ';'
  | ','
  | 'x'; // anything else: ? : { } [ ] \ $ stray dots

const LOGIC_WORDS = new Set(['and', 'or', 'xor']);
const COMPARE_WORDS = new Set(['like', 'rlike', 'regexp', 'between', 'sounds']);
const STATEMENT_WORDS = new Set([
  'insert',
  'update',
  'delete',
  'drop',
  'create',
  'alter',
  'truncate',
  'rename',
  'exec',
  'execute',
  'declare',
  'shutdown',
  'grant',
  'revoke',
  'set',
  'replace',
  'desc',
  'describe',
  'show',
  'call',
]);
const LITERAL_WORDS = new Set(['null', 'true', 'false', 'unknown']);
const OPERATOR_WORDS = new Set(['not', 'div', 'mod']);

/**
 * Calls that have no use in an ordinary query parameter: time delays,
 * file and network access, and the functions error-based extraction
 * abuses (MySQL XPath and geometry functions, Oracle's network packages).
 * Matched on the whole dotted name and on its last part.
 */
const ATTACK_FUNCTIONS = new Set([
  'sleep',
  'benchmark',
  'pg_sleep',
  'pg_sleep_for',
  'dbms_lock.sleep',
  'dbms_session.sleep',
  'dbms_pipe.receive_message',
  'receive_message',
  'load_file',
  'extractvalue',
  'updatexml',
  'xp_cmdshell',
  'xp_dirtree',
  'xp_fileexist',
  'xp_regread',
  'sp_oacreate',
  'sp_executesql',
  'sys_eval',
  'sys_exec',
  'lo_import',
  'lo_export',
  'pg_read_file',
  'pg_ls_dir',
  'name_const',
  'gtid_subset',
  'gtid_subtract',
  'randomblob',
  'utl_inaddr.get_host_address',
  'utl_inaddr.get_host_name',
  'get_host_address',
  'get_host_name',
  'utl_http.request',
  'httpuritype',
  'ctxsys.drithsx.sn',
  'dbms_xmlgen.getxml',
  'xmltype',
  'dbms_java.runjava',
  'st_latfromgeohash',
  'st_longfromgeohash',
  'st_pointfromgeohash',
  'json_keys',
]);

/** Ordinary SQL functions: harmless alone, telling right after a broken-out string or logic operator. */
const SQL_FUNCTIONS = new Set([
  'char',
  'chr',
  'nchar',
  'concat',
  'concat_ws',
  'group_concat',
  'string_agg',
  'listagg',
  'version',
  'database',
  'user',
  'current_user',
  'system_user',
  'session_user',
  'schema',
  'ascii',
  'ord',
  'unicode',
  'substring',
  'substr',
  'mid',
  'left',
  'right',
  'if',
  'iif',
  'ifnull',
  'isnull',
  'nullif',
  'coalesce',
  'count',
  'cast',
  'convert',
  'hex',
  'unhex',
  'bin',
  'conv',
  'length',
  'len',
  'char_length',
  'lower',
  'upper',
  'lcase',
  'ucase',
  'rand',
  'floor',
  'ceil',
  'md5',
  'sha1',
  'sha2',
  'now',
  'sysdate',
  'exists',
  'row',
  'elt',
  'make_set',
  'db_name',
  'host_name',
  'object_name',
  'user_name',
  'suser_name',
  'is_srvrolemember',
  'quotename',
  'reverse',
  'trim',
  'instr',
  'locate',
  'position',
  'strcmp',
  'greatest',
  'least',
  'sqlite_version',
  'current_database',
  'to_char',
  'regexp_substr',
  'table_name',
  'column_name',
  'replace',
  'exp',
  'geometrycollection',
  'multipoint',
  'multipolygon',
  'multilinestring',
  'linestring',
  'polygon',
]);

/** System variables that leak server facts: "@@version" means SQL, "@@john" is a typo. */
const SYSTEM_VARIABLES = new Set([
  'version',
  'version_comment',
  'version_compile_os',
  'datadir',
  'basedir',
  'hostname',
  'servername',
  'tmpdir',
  'plugin_dir',
  'innodb_version',
  'secure_file_priv',
  'spid',
  'language',
  'identity',
  'rowcount',
  'microsoftversion',
  'port',
  'have_openssl',
  'log_error',
]);

/** Objects a DROP / CREATE / ALTER / TRUNCATE statement names next. */
const SCHEMA_OBJECTS = new Set([
  'table',
  'database',
  'schema',
  'user',
  'view',
  'procedure',
  'function',
  'index',
  'trigger',
  'login',
  'temporary',
  'column',
  'event',
  'role',
  'tablespace',
  'sequence',
]);

/** A number glued to one of these is split ("1union", "1and"), as MySQL's lexer does. */
const GLUE_WORDS = new Set(['union', 'and', 'or', 'xor', 'order', 'group', 'select', 'from', 'like', 'div', 'having', 'limit', 'waitfor']);

const UNARY_OPERATORS = new Set(['-', '+', '~', '!', 'not']);
/** Token classes after which an operator is unary: "= -1", "or not 1=1", "(-1". */
const BEFORE_UNARY = new Set<TokenType>(['&', '=', 'o', ',', ';', 'S', 'E', 'U', 'O', 'H', 'W', 'x', 'c']);
const VALUE_TYPES = new Set<TokenType>(['s', 'n', 'b', 'v', 'F', 'g', 'f', 'S']);

/** Longer inputs are cut to this many tokens; the caller already bounds the characters. */
const MAX_TOKENS = 2048;
/**
 * Without a construct for anywhereRules (ANYWHERE_TRIGGER), only the
 * anchored rules can match, and they look at the first few tokens: reading
 * that many keeps prose full of "and" and "or" cheap.
 */
const ANCHORED_TOKENS = 24;
/** Word and literal texts longer than this are not kept (only short ones are compared or classified). */
const MAX_TEXT = 40;

class TokenStream {
  constructor(readonly limit: number) {}
  readonly types: TokenType[] = [];
  readonly texts: string[] = [];
  /** A construct only SQL has: SLEEP(, @@version, WAITFOR DELAY, INTO OUTFILE, EXEC xp_... */
  strong = false;
  /** For the quote contexts: the leading string the context quote closes. */
  leadingStringHasSpace = false;
  leadingStringLength = 0;
  /** Whether the leading string holds a letter or digit ("admin'--"), not only quotes (a docstring's opening quotes). */
  leadingStringHasWord = false;

  get length(): number {
    return this.types.length;
  }

  last(): TokenType | undefined {
    return this.types[this.types.length - 1];
  }

  lastText(): string {
    return this.texts[this.texts.length - 1] ?? '';
  }

  push(type: TokenType, text: string): void {
    const n = this.types.length;
    if (n >= this.limit) return;
    // Fold a unary operator into the value it applies to: "-1" and "not 1" are values.
    if (VALUE_TYPES.has(type) && n > 0 && this.types[n - 1] === 'o' && UNARY_OPERATORS.has(this.texts[n - 1]!)) {
      const before = this.types[n - 2];
      if (before === undefined || BEFORE_UNARY.has(before)) {
        this.types.pop();
        this.texts.pop();
      }
    }
    this.types.push(type);
    this.texts.push(text);
  }

  replaceLast(type: TokenType, text: string): void {
    const n = this.types.length;
    if (n === 0) return;
    this.types[n - 1] = type;
    this.texts[n - 1] = text;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isWordStart(c: number): boolean {
  const lower = c | 0x20;
  return (lower >= 0x61 && lower <= 0x7a) || c === 0x5f || (c >= 0x80 && c !== 0xa0);
}

function isWordChar(c: number): boolean {
  return isWordStart(c) || isDigit(c) || c === 0x24; /* $ */
}

function isSpace(c: number): boolean {
  return c <= 0x20 || c === 0x7f || c === 0xa0;
}

/**
 * Index of the quote that closes a string whose content starts at `from`,
 * or -1. Backslash escapes (MySQL) and doubled quotes (standard SQL) do not close.
 */
function stringEnd(s: string, from: number, quote: number): number {
  const n = s.length;
  for (let j = from; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c === 0x5c) {
      j += 1;
    } else if (c === quote) {
      if (s.charCodeAt(j + 1) === quote) j += 1;
      else return j;
    }
  }
  return -1;
}

/**
 * Index of the quote that closes the string a quote context opened, or -1.
 * Here a backslash does not escape: an application that escapes quotes
 * with a backslash (addslashes, mysql_escape_string) turns the input's
 * backslash-quote into two backslashes and a quote, the first backslash
 * escaping the second and the quote closing the string; one that doubles
 * quotes leaves the backslash literal (standard SQL). A doubled quote
 * still does not close.
 */
function leadingStringEnd(s: string, quote: number): number {
  const n = s.length;
  for (let j = 0; j < n; j++) {
    if (s.charCodeAt(j) !== quote) continue;
    if (s.charCodeAt(j + 1) === quote) j += 1;
    else return j;
  }
  return -1;
}

/** Index of the first character after whitespace and closed block comments from `i`. */
function skipGap(s: string, i: number): number {
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (isSpace(c)) {
      i += 1;
    } else if (c === 0x2f && s.charCodeAt(i + 1) === 0x2a && s.charCodeAt(i + 2) !== 0x21) {
      const close = s.indexOf('*/', i + 2);
      if (close === -1) return i;
      i = close + 2;
    } else {
      return i;
    }
  }
  return i;
}

function lastPart(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot === -1 ? name : name.slice(dot + 1);
}

/** Index of the last non-space character before i, or -1. */
function previousNonSpace(s: string, i: number): number {
  let j = i - 1;
  while (j >= 0 && isSpace(s.charCodeAt(j))) j--;
  return j;
}

/** The lower-cased word starting at i (letters, digits, "_"), at most MAX_TEXT long. */
function peekWord(s: string, i: number): string {
  let j = i;
  while (j < s.length && j - i < MAX_TEXT && isWordChar(s.charCodeAt(j))) j++;
  return s.slice(i, j).toLowerCase();
}

/**
 * Reads `s` as SQL. With `quote` non-zero the input is taken to follow an
 * opening quote of that kind, so it starts with the rest of a string.
 */
function tokenize(s: string, quote: number, limit: number): TokenStream {
  const ts = new TokenStream(limit);
  const n = s.length;
  let i = 0;
  if (quote !== 0) {
    const end = leadingStringEnd(s, quote);
    if (end === -1) return ts;
    ts.push('s', end <= MAX_TEXT ? s.slice(0, end) : '');
    ts.leadingStringLength = end;
    ts.leadingStringHasWord = /[\p{L}\p{N}]/u.test(s.slice(0, Math.min(end, 64)));
    for (let j = 0; j < end; j++) {
      if (isSpace(s.charCodeAt(j))) {
        ts.leadingStringHasSpace = true;
        break;
      }
    }
    i = end + 1;
  }
  let inExecutableComment = false;
  while (i < n && ts.length < ts.limit) {
    const c = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (isSpace(c)) {
      i += 1;
      continue;
    }
    // Strings and quoted identifiers.
    if (c === 0x27 || c === 0x22) {
      const end = stringEnd(s, i + 1, c);
      const stop = end === -1 ? n : end;
      ts.push('s', stop - i - 1 <= MAX_TEXT ? s.slice(i + 1, stop) : '');
      i = stop + 1;
      continue;
    }
    if (c === 0x60 /* ` */) {
      const end = s.indexOf('`', i + 1);
      ts.push('b', '');
      i = end === -1 ? n : end + 1;
      continue;
    }
    // Numbers: 12, 1.5, .5, 1e3, 0x1f, 0b101.
    if (isDigit(c) || (c === 0x2e && isDigit(next))) {
      let j = i;
      if (c === 0x30 && (next | 0x20) === 0x78) {
        j = i + 2;
        while (j < n && (isDigit(s.charCodeAt(j)) || ((s.charCodeAt(j) | 0x20) >= 0x61 && (s.charCodeAt(j) | 0x20) <= 0x66))) j++;
      } else if (c === 0x30 && (next | 0x20) === 0x62 && (s.charCodeAt(i + 2) === 0x30 || s.charCodeAt(i + 2) === 0x31)) {
        j = i + 2;
        while (j < n && (s.charCodeAt(j) === 0x30 || s.charCodeAt(j) === 0x31)) j++;
      } else {
        while (j < n && isDigit(s.charCodeAt(j))) j++;
        if (s.charCodeAt(j) === 0x2e) {
          j += 1;
          while (j < n && isDigit(s.charCodeAt(j))) j++;
        }
        if ((s.charCodeAt(j) | 0x20) === 0x65) {
          let k = j + 1;
          if (s.charCodeAt(k) === 0x2b || s.charCodeAt(k) === 0x2d) k++;
          if (isDigit(s.charCodeAt(k))) {
            j = k;
            while (j < n && isDigit(s.charCodeAt(j))) j++;
          }
        }
      }
      if (j < n && isWordChar(s.charCodeAt(j))) {
        // "1union" is a number and a keyword to MySQL; "2pm" or "3rd" is a word.
        if (GLUE_WORDS.has(peekWord(s, j))) {
          ts.push('n', s.slice(i, j));
          i = j;
        } else {
          let k = j;
          while (k < n && isWordChar(s.charCodeAt(k))) k++;
          ts.push('b', '');
          i = k;
        }
        continue;
      }
      ts.push('n', j - i <= MAX_TEXT ? s.slice(i, j) : '');
      i = j;
      continue;
    }
    if (isWordStart(c)) {
      let j = i + 1;
      while (j < n) {
        const d = s.charCodeAt(j);
        if (isWordChar(d)) j++;
        else if (d === 0x2e && (isWordStart(s.charCodeAt(j + 1)) || s.charCodeAt(j + 1) === 0x2e)) j++;
        else break;
      }
      // String literals with a prefix: N'..', X'..', B'..', E'..', _utf8'..'.
      if (s.charCodeAt(j) === 0x27 && (j - i === 1 ? 'nNxXbBeE'.includes(s[i]!) : c === 0x5f)) {
        i = j;
        continue;
      }
      if (j - i > MAX_TEXT) {
        ts.push(s.charCodeAt(skipGap(s, j)) === 0x28 ? 'f' : 'b', '');
        i = j;
        continue;
      }
      const word = s.slice(i, j).toLowerCase();
      i = j;
      classifyWord(ts, s, word, j);
      continue;
    }
    if (c === 0x40 /* @ */) {
      if (next === 0x40) {
        const name = peekWord(s, i + 2);
        const base = name.startsWith('global.') || name.startsWith('session.') ? lastPart(name) : name;
        if (SYSTEM_VARIABLES.has(base) || name.startsWith('global') || name.startsWith('session')) ts.strong = true;
        ts.push('v', name);
        i += 2 + name.length;
        continue;
      }
      if (isWordChar(next)) {
        const name = peekWord(s, i + 1);
        ts.push('v', name);
        i += 1 + name.length;
        while (i < n && isWordChar(s.charCodeAt(i))) i++;
        continue;
      }
      if (next === 0x27 || next === 0x22 || next === 0x60) {
        const end = next === 0x60 ? s.indexOf('`', i + 2) : stringEnd(s, i + 2, next);
        ts.push('v', '');
        i = end === -1 ? n : end + 1;
        continue;
      }
      ts.push('x', '@');
      i += 1;
      continue;
    }
    switch (c) {
      case 0x2d: // -
        if (next === 0x2d) {
          i = pushLineComment(ts, s, i);
        } else {
          ts.push('o', '-');
          i += 1;
        }
        continue;
      case 0x23: // #
        i = pushLineComment(ts, s, i);
        continue;
      case 0x2f: // /
        if (next === 0x2a) {
          if (s.charCodeAt(i + 2) === 0x21) {
            // MySQL executable comment "/*!50000 UNION*/": its content is code.
            i += 3;
            let digits = 0;
            while (digits < 6 && isDigit(s.charCodeAt(i))) {
              i++;
              digits++;
            }
            inExecutableComment = true;
            continue;
          }
          const close = s.indexOf('*/', i + 2);
          if (close === -1) {
            ts.push('c', '/*');
            i = n;
          } else {
            i = close + 2; // a closed comment separates tokens like a space: "1/**/or/**/1=1"
          }
        } else {
          ts.push('o', '/');
          i += 1;
        }
        continue;
      case 0x2a: // *
        if (next === 0x2f && inExecutableComment) {
          inExecutableComment = false;
          i += 2;
        } else {
          ts.push('o', '*');
          i += 1;
        }
        continue;
      case 0x3b:
        ts.push(';', ';');
        i += 1;
        continue;
      case 0x2c:
        ts.push(',', ',');
        i += 1;
        continue;
      case 0x28: // ( and ) are dropped: "') or ('a'='a" has the shape of "' or 'a'='a"
      case 0x29:
        i += 1;
        continue;
      case 0x3d: // = ==
        ts.push('=', '=');
        i += next === 0x3d ? 2 : 1;
        continue;
      case 0x3c: // < <= <> <=> <<
        if (next === 0x3c) {
          ts.push('o', '<<');
          i += 2;
        } else {
          ts.push('=', '<');
          i += next === 0x3d ? (s.charCodeAt(i + 2) === 0x3e ? 3 : 2) : next === 0x3e ? 2 : 1;
        }
        continue;
      case 0x3e: // > >= >>
        if (next === 0x3e) {
          ts.push('o', '>>');
          i += 2;
        } else {
          ts.push('=', '>');
          i += next === 0x3d ? 2 : 1;
        }
        continue;
      case 0x21: // ! !=
        if (next === 0x3d) {
          ts.push('=', '!=');
          i += 2;
        } else {
          ts.push('o', '!');
          i += 1;
        }
        continue;
      case 0x7c: // | ||
        if (next === 0x7c) {
          ts.push('&', '||');
          i += 2;
        } else {
          ts.push('o', '|');
          i += 1;
        }
        continue;
      case 0x26: // & &&
        if (next === 0x26) {
          ts.push('&', '&&');
          i += 2;
        } else {
          ts.push('o', '&');
          i += 1;
        }
        continue;
      case 0x3a: // :=
        if (next === 0x3d) {
          ts.push('=', ':=');
          i += 2;
        } else {
          ts.push('x', ':');
          i += 1;
        }
        continue;
      case 0x2b:
      case 0x25:
      case 0x5e:
      case 0x7e:
        ts.push('o', s[i]!);
        i += 1;
        continue;
      default:
        ts.push('x', '');
        i += 1;
    }
  }
  return ts;
}

/** "--" and "#" comment to the end of the line; a newline ends them ("1#%0aunion select"). */
function pushLineComment(ts: TokenStream, s: string, i: number): number {
  const newline = s.indexOf('\n', i);
  const end = newline === -1 ? s.length : newline;
  // The text is kept: a probe's comment is empty or "-", prose after "--" is words.
  const from = i + (s[i] === '#' ? 1 : 2);
  ts.push('c', end - from <= MAX_TEXT ? s.slice(from, end).trim() : 'long');
  return newline === -1 ? s.length : newline + 1;
}

function classifyWord(ts: TokenStream, s: string, word: string, end: number): void {
  const after = skipGap(s, end);
  // MySQL wants built-in calls glued to their "(" (without IGNORE_SPACE); names
  // with an underscore are unambiguous enough to allow a space as PostgreSQL does.
  const isCall = s.charCodeAt(after) === 0x28 && (after === end || word.includes('_') || s.charCodeAt(end) === 0x2f);
  const previous = ts.last();
  const previousText = ts.lastText();

  // Multi-word keywords.
  if (word === 'by' && previous === 'b' && (previousText === 'order' || previousText === 'group')) {
    ts.replaceLast('O', previousText);
    return;
  }
  if ((word === 'all' || word === 'distinct') && previous === 'U') return;
  if ((word === 'delay' || word === 'time') && previous === 'W') {
    ts.strong = true;
    return;
  }
  if ((word === 'outfile' || word === 'dumpfile') && previousText === 'into') ts.strong = true;
  if (previous === 'E' && (previousText === 'exec' || previousText === 'execute') && /^(?:xp_|sp_|master\.)/.test(word)) ts.strong = true;

  if (isCall) {
    if (ATTACK_FUNCTIONS.has(word) || ATTACK_FUNCTIONS.has(lastPart(word))) {
      ts.strong = true;
      ts.push('F', word);
      return;
    }
    if (SQL_FUNCTIONS.has(word)) {
      ts.push('g', word);
      return;
    }
  }
  if (word === 'xp_cmdshell' || word === 'sp_oacreate' || word === 'sp_makewebtask' || word === 'sp_addsrvrolemember') {
    ts.strong = true;
    ts.push('F', word);
    return;
  }
  if (LOGIC_WORDS.has(word)) ts.push('&', word);
  else if (word === 'union') ts.push('U', word);
  else if (word === 'select') ts.push('S', s.charCodeAt(previousNonSpace(s, end - 6)) === 0x28 ? '(select' : word);
  else if (STATEMENT_WORDS.has(word)) ts.push('E', word);
  else if (COMPARE_WORDS.has(word)) ts.push('=', word);
  else if (word === 'is') {
    const following = peekWord(s, after);
    ts.push(following === 'null' || following === 'not' || following === 'true' || following === 'false' ? '=' : 'b', word);
  } else if (word === 'in') ts.push(s.charCodeAt(after) === 0x28 ? '=' : 'b', word);
  else if (LITERAL_WORDS.has(word)) ts.push('n', word);
  else if (OPERATOR_WORDS.has(word)) ts.push('o', word);
  else if (word === 'having') ts.push('H', word);
  else if (word === 'waitfor') ts.push('W', word);
  else ts.push(isCall ? 'f' : 'b', word);
}

/** After SELECT: a column list an attack would write (1,2 / NULL / * / @@x / 'a' / f() / col, / col FROM). */
function selectListAt(ts: TokenStream, k: number): boolean {
  const type = ts.types[k];
  const text = ts.texts[k];
  switch (type) {
    case 'n':
    case 's':
    case 'v':
    case 'F':
    case 'g':
    case 'f':
    case 'S':
      return true;
    case 'o':
      return text === '*';
    case 'b':
      if (text === 'distinct' || text === 'all' || text === 'top') return selectListAt(ts, k + 1);
      switch (ts.types[k + 1]) {
        case ',': // col1, col2
        case '&': // user || ':' || password
        case 'o':
        case 'c': // password--
          return true;
        case 'b':
          return ts.texts[k + 1] === 'from';
        default:
          return false;
      }
    default:
      return false;
  }
}

/**
 * After "(SELECT": a select list that goes on to FROM, a CASE, or a call,
 * which prose in parentheses ("(select 1 answer)", "(select all that
 * apply)") does not.
 */
function subqueryAt(ts: TokenStream, k: number): boolean {
  if (!selectListAt(ts, k)) return false;
  const end = Math.min(ts.length, k + 16);
  for (let j = k; j < end; j++) {
    const type = ts.types[j];
    if (type === 'F' || type === 'g' || type === 'S') return true;
    if (type === 'b' && (ts.texts[j] === 'from' || ts.texts[j] === 'case')) return true;
  }
  return false;
}

/** A whole statement starting at k, as stacked after ";". */
function statementAt(ts: TokenStream, k: number): boolean {
  const type = ts.types[k];
  if (type === 'S') return selectListAt(ts, k + 1);
  // "; IF(1=1) ...", "; IIF(1=1,1,1/0)": a stacked conditional on a tautology.
  if (type === 'g' && (ts.texts[k] === 'if' || ts.texts[k] === 'iif')) return tautologyAt(ts, k + 1);
  if (type !== 'E') return false;
  const nextType = ts.types[k + 1];
  const nextText = ts.texts[k + 1] ?? '';
  switch (ts.texts[k]) {
    case 'insert':
    case 'replace':
      return nextText === 'into';
    case 'update':
      return nextType === 'b' && ts.texts[k + 2] === 'set';
    case 'delete':
      return nextText === 'from';
    case 'drop':
    case 'create':
    case 'alter':
    case 'truncate':
    case 'rename':
      return SCHEMA_OBJECTS.has(nextText);
    case 'exec':
    case 'execute':
      return nextType === 's' || nextType === 'v' || nextType === 'F' || /^(?:xp_|sp_|master\.)/.test(nextText);
    case 'declare':
    case 'set':
      return nextType === 'v';
    case 'shutdown':
      return nextType === undefined || nextType === 'c' || nextType === ';' || nextText === 'with';
    case 'desc':
    case 'describe':
      return nextType === 'b';
    case 'call':
      return nextType === 'f' || nextType === 'g' || nextType === 'F';
    case 'show':
      return /^(?:tables|databases|schemas|columns|grants|variables|processlist|users)$/.test(nextText);
    case 'grant':
    case 'revoke':
      return (
        nextType === 'S' || nextType === 'E' || nextText === 'all' || nextText === 'file' || nextText === 'usage' || nextText === 'super'
      );
    default:
      return false;
  }
}

/**
 * Statements that prose does not spell out in full: "insert into the slot"
 * has no VALUES, "update your profile" no SET x =, "delete from cart" no WHERE.
 */
function standaloneStatement(ts: TokenStream): boolean {
  const texts = ts.texts;
  const end = Math.min(ts.length, 32);
  switch (texts[0]) {
    case 'insert':
    case 'replace':
      if (texts[1] !== 'into') return false;
      for (let k = 3; k < end; k++) if (texts[k] === 'values' || ts.types[k] === 'S') return true;
      return false;
    case 'update':
      for (let k = 2; k + 2 < end; k++) if (texts[k] === 'set' && ts.types[k + 1] === 'b' && ts.types[k + 2] === '=') return true;
      return false;
    case 'delete':
      return texts[1] === 'from' && ts.types[2] === 'b' && texts[3] === 'where';
    default:
      return false;
  }
}

/** x = y where both sides are literals of one kind or the same word: "1=1", "'a'='a'", "x=x". */
function tautologyAt(ts: TokenStream, k: number): boolean {
  if (ts.types[k + 1] !== '=') return false;
  const left = ts.types[k];
  const right = ts.types[k + 2];
  if (left === undefined || right === undefined) return false;
  if (left === 'n' && right === 'n') return true;
  if (left === 's' && right === 's') return true;
  const leftText = ts.texts[k]!;
  return (
    (left === 's' || left === 'n' || left === 'b') &&
    (right === 's' || right === 'n' || right === 'b') &&
    leftText !== '' &&
    leftText === ts.texts[k + 2]
  );
}

/** "1=1", "'a'='a'": one literal compared equal to itself ("4 > 3" is true too, and ordinary). */
function sameLiteralsEqual(ts: TokenStream, k: number): boolean {
  const type = ts.types[k];
  return (
    (type === 'n' || type === 's') &&
    ts.types[k + 2] === type &&
    ts.texts[k + 1] === '=' &&
    ts.texts[k] !== '' &&
    ts.texts[k] === ts.texts[k + 2]
  );
}

/** Rules that hold wherever they occur: stacked statements, UNION SELECT, SQL-only constructs. */
function anywhereRules(ts: TokenStream): boolean {
  if (ts.strong) return true;
  const types = ts.types;
  for (let k = 0; k < types.length; k++) {
    const type = types[k];
    if (type === 'U' && types[k + 1] === 'S' && selectListAt(ts, k + 2)) return true;
    if (type === ';' && statementAt(ts, k + 1)) return true;
    // WHERE 1=1: a tautology handed to a query builder.
    if (type === 'b' && ts.texts[k] === 'where' && tautologyAt(ts, k + 1)) return true;
    // CASE [x] WHEN y THEN z: conditional probes ("1 AND (CASE WHEN (1=1) THEN 1 ELSE 0 END)=1", "CASE 1 WHEN 1 THEN").
    if (type === 'b' && ts.texts[k] === 'case' && (ts.texts[k + 1] === 'when' || ts.texts[k + 2] === 'when')) {
      for (let j = k + 2; j < Math.min(types.length, k + 24); j++) if (ts.texts[j] === 'then') return true;
    }
    // A subquery where a value was: "(SELECT COUNT(*) FROM t", "(SELECT (CASE WHEN", "(SELECT CONCAT(".
    if (type === 'S' && ts.texts[k] === '(select' && subqueryAt(ts, k + 1)) return true;
    // "ORDER BY 3--": column probing cut by a comment.
    if (type === 'O' && types[k + 1] === 'n') {
      let j = k + 2;
      while (types[j] === ',' && types[j + 1] === 'n') j += 2;
      if (types[j] === 'c' || ((types[k - 1] === 'n' || types[k - 1] === 's') && types[j] === undefined)) return true;
    }
  }
  return false;
}

/** Shapes for a value pasted after an opening quote: the leading string is the broken-out one. */
const QUOTED_SHAPES: readonly RegExp[] = [
  /^s&(?:[snbv]=|so|[sn][c;]|[FgS])/, // ' or '1'='1   ' or 1=1--   ' or ''-'   ' or 1--   ' and sleep(5)   ' and (select
  /^s=[snbv](?:$|[c&;])/, // '='   1'='1   ' like '
  /^s[o&=][FgS]/, // '+char(65)+'   '||version()||'   '=(select
  /^sO[nb]/, // ' order by 1--   ' group by x
  /^sH[snbv]=/, // ' having 1=1
];

/** Shapes for a value used as-is (a number or an identifier). */
const BARE_SHAPES: readonly RegExp[] = [
  /^s&(?:[snbv]=|[FgS])/, // 'a' or 'x'='x   (a quoted value pasted where a number was)
  /^[nv]&(?:[snbv]=|[FgS])/, // 1 or 1=1   1 and sleep(5)   1 and (select ...)   1 and ascii(
  /^[nv][=o]S/, // 1=(select ...)   1-(select ...)
  /^[nv]=[Fg]/, // 1 regexp if(...)   1=convert(int, ...)
  /^b&[FgS]/, // x or char(   admin or (select
  /^&[ns]c/, // or 1--   or true#
  /^[nb]H[snbv]=/, // 1 having 1=1
];

function quotedContextMatches(ts: TokenStream): boolean {
  if (ts.length === 0) return false;
  if (anywhereRules(ts)) return true;
  const shape = ts.types.slice(0, 8).join('');
  for (const rule of QUOTED_SHAPES) if (rule.test(shape)) return true;
  // admin'--   admin'#   1'/*   '--: a value cut by a comment. Prose with a quote has
  // spaces before it; prose that quotes "'--'" has words after it.
  if (shape.startsWith('sc') && !ts.leadingStringHasSpace && ts.leadingStringLength <= 64) {
    if (ts.leadingStringHasWord || (ts.leadingStringLength === 0 && /^[-+\s]{0,3}$/.test(ts.texts[1]!))) return true;
  }
  // '-'   '&'   '^'   '-''-'   '||'   ' or ': operators between empty strings, and nothing else.
  if (ts.leadingStringLength === 0 && /^s(?:[o&]s)+$/.test(shape) && ts.texts.every((text, k) => k % 2 === 1 || text === '')) return true;
  return false;
}

function bareContextMatches(ts: TokenStream): boolean {
  if (ts.length === 0) return false;
  if (anywhereRules(ts)) return true;
  const shape = ts.types.slice(0, 8).join('');
  for (const rule of BARE_SHAPES) if (rule.test(shape)) return true;
  // admin or 1=1   or 1=1   x or 'a'='a': a logic operator before a tautology.
  if (shape.startsWith('b&') && tautologyAt(ts, 2)) return true;
  if (shape.startsWith('&') && tautologyAt(ts, 1)) return true;
  if (shape.startsWith(';&') && tautologyAt(ts, 2)) return true; // "; or '1'='1'"
  // IIF(1=1,1,1/0), ELT(1=1,2), (1=1)*2: a tautology as a function argument or operand.
  if (shape.startsWith('g') && sameLiteralsEqual(ts, 1)) return true;
  if (sameLiteralsEqual(ts, 0) && (ts.types[3] === 'o' || ts.types[3] === '&')) return true;
  // 1 and true / 1 and false: boolean probes.
  if (/^[nv]&n(?:c|$)/.test(shape) && (ts.texts[2] === 'true' || ts.texts[2] === 'false')) return true;
  // A whole data-changing statement as the value: INSERT INTO t ... VALUES, UPDATE t SET c=, DELETE FROM t WHERE.
  if (shape.startsWith('E') && standaloneStatement(ts)) return true;
  // (select 1): a subquery where a value was expected.
  if (shape.startsWith('S') && ts.texts[0] === '(select' && selectListAt(ts, 1)) return true;
  // char(97)+char(100): a string spelled in character codes.
  if (/^g[n,]*[o&]g/.test(shape) && /^n?chr?a?r?$/.test(ts.texts[0]!) && /^n?chr?a?r?$/.test(ts.texts[shape.search(/[o&]/) + 1] ?? ''))
    return true;
  return false;
}

const TRIGGER_WORDS = [
  'or',
  'and',
  'xor',
  'union',
  'select',
  'order',
  'group',
  'having',
  'waitfor',
  'into',
  'exec',
  'execute',
  'case',
  'where',
  'insert',
  'update',
  'delete',
  'rlike',
  'regexp',
  'char',
  'chr',
  'sp_makewebtask',
  'sp_addsrvrolemember',
  ...[...ATTACK_FUNCTIONS].map((name) => name.split('.')[0]!),
];
const STACKED_WORDS = ['select', ...STATEMENT_WORDS].join('|');

/**
 * Cheap filters before tokenizing as-is: every rule for an unquoted value
 * needs a trigger word, a logic operator, a stacked statement, a comment
 * or "@@". A browser User-Agent or an ordinary path has none of them.
 * Split in four because the regexp engine runs four short searches faster
 * than one with all the alternatives.
 */
const TRIGGER_WORD = new RegExp(String.raw`\b(?:${[...new Set(TRIGGER_WORDS)].join('|')})\b`, 'i');
const TRIGGER_PUNCTUATION = /@@|&&|\|\||\/\*/;
const TRIGGER_STACKED = new RegExp(String.raw`;\s{0,8}(?:${STACKED_WORDS})`, 'i');
/** Keywords glued to a number ("1union", ".1and"), which "\b" does not see. */
const TRIGGER_GLUED = /\d(?:union|and|or|xor|order|select|having|div|like)\b/i;
/**
 * T-SQL's "1WAITFOR DELAY '0:0:5'": apart (one more word in TRIGGER_GLUED
 * makes that search three times slower), and only with the quote its time
 * literal needs.
 */
const TRIGGER_GLUED_WAITFOR = /\dwaitfor\b/i;

/** Calls that take a tautology as an argument (IIF(1=1,..), ELT(1=1,..)); a stacked CALL is in TRIGGER_STACKED. */
const TRIGGER_CALL = /\b(?:i?if|elt|make_set)\s{0,8}\(/i;

function hasTrigger(s: string): boolean {
  return (
    TRIGGER_WORD.test(s) ||
    TRIGGER_PUNCTUATION.test(s) ||
    TRIGGER_GLUED.test(s) ||
    (s.indexOf("'") !== -1 && TRIGGER_GLUED_WAITFOR.test(s)) ||
    (s.indexOf(';') !== -1 && TRIGGER_STACKED.test(s)) ||
    (s.indexOf('=') !== -1 && s.indexOf('(') !== -1 && TRIGGER_CALL.test(s))
  );
}

/**
 * What a context-free rule (anywhereRules) needs: without any of these,
 * only the first ANCHORED_TOKENS tokens are read.
 */
const ANYWHERE_TRIGGER = new RegExp(
  String.raw`\bunion\b|@@|\bwaitfor\b|(?:out|dump)file\b|\bexec(?:ute)?\b|\b(?:xp|sp)_|\bcase\s{1,8}when\b|\b(?:order|group)\s{1,8}by\b|\bwhere\b|\/\*|` +
    String.raw`;\s{0,8}(?:${STACKED_WORDS})|\b(?:${[...new Set([...ATTACK_FUNCTIONS].map((name) => name.split('.')[0]!))].join('|')})\b`,
  'i',
);

/** Words that, right after the string a quote context closes, can begin one of QUOTED_SHAPES. */
const AFTER_QUOTE_WORD =
  /^(?:or|and|xor|not|like|rlike|regexp|sounds|between|is|in|div|mod|order|group|having|union|select|waitfor|into|limit|procedure|where)\b/i;

/**
 * Whether a quote context is worth reading: every QUOTED_SHAPES rule, and
 * the "s c" and "s o s" ones, need an operator, a comment or one of
 * AFTER_QUOTE_WORD right after the string the context quote closes (past
 * any ")"). "O'Reilly", "Kids' rain boots" or "it's" have a word there.
 */
function sqlAfterQuote(s: string, quote: number): boolean {
  const end = leadingStringEnd(s, quote);
  if (end === -1) return false;
  let i = end + 1;
  while (i < s.length && (isSpace(s.charCodeAt(i)) || s.charCodeAt(i) === 0x29 || s.charCodeAt(i) === 0x28)) i++;
  switch (s.charCodeAt(i)) {
    case 0x3d:
    case 0x3c:
    case 0x3e:
    case 0x21:
    case 0x2d:
    case 0x23:
    case 0x2f:
    case 0x2b:
    case 0x2a:
    case 0x25:
    case 0x5e:
    case 0x7c:
    case 0x26:
    case 0x7e:
    case 0x3b:
    case 0x2c:
      return true;
    default:
      return AFTER_QUOTE_WORD.test(s.slice(i, i + 12));
  }
}

/** Removes "/* ... *\/" comments outright, as filters that strip them do ("un/**\/ion" becomes "union"). */
function withoutBlockComments(s: string): string {
  let out = '';
  let from = 0;
  for (let open = s.indexOf('/*'); open !== -1; open = s.indexOf('/*', from)) {
    if (s.charCodeAt(open + 2) === 0x21) {
      out += s.slice(from, open + 2);
      from = open + 2;
      continue;
    }
    const close = s.indexOf('*/', open + 2);
    if (close === -1) break;
    out += s.slice(from, open);
    from = close + 2;
  }
  return out + s.slice(from);
}

/** True when `input` (already decoded, bounded by the caller) reads as a SQL injection. */
export function detectSqli(input: string): boolean {
  if (input.length < 2) return false;
  const keyword = hasTrigger(input);
  const anywhere = keyword && ANYWHERE_TRIGGER.test(input);
  const limit = anywhere ? MAX_TOKENS : ANCHORED_TOKENS;
  if (keyword && bareContextMatches(tokenize(input, 0, limit))) return true;
  if (input.indexOf("'") !== -1 && sqlAfterQuote(input, 0x27) && quotedContextMatches(tokenize(input, 0x27, limit))) return true;
  if (input.indexOf('"') !== -1 && sqlAfterQuote(input, 0x22) && quotedContextMatches(tokenize(input, 0x22, limit))) return true;
  if (!anywhere) return false;
  // MySQL's identifier quote: only the context-free rules ("x` union select 1--").
  if (input.indexOf('`') !== -1 && anywhereRules(tokenize(input, 0x60, MAX_TOKENS))) return true;
  if (input.indexOf('/*') !== -1) {
    const stripped = withoutBlockComments(input);
    if (stripped !== input && bareContextMatches(tokenize(stripped, 0, MAX_TOKENS))) return true;
  }
  return false;
}

/**
 * A request path: each segment is a value of its own ("/item/1' or '1'='1"),
 * and the whole path is read once more when comments join segments
 * ("/1/**\/union/**\/select/**\/1,2").
 */
export function detectSqliInPath(path: string): boolean {
  if (path.length < 2 || (!hasTrigger(path) && path.indexOf("'") === -1 && path.indexOf('"') === -1)) return false;
  let from = 0;
  while (from <= path.length) {
    let slash = path.indexOf('/', from);
    if (slash === -1) slash = path.length;
    if (slash - from >= 2 && detectSqli(path.slice(from, slash))) return true;
    from = slash + 1;
  }
  const comment = path.indexOf('/*');
  if (comment === -1) return false;
  if (detectSqli(path)) return true;
  // "/products/1/**/OR/**/1=1": the value may start at any of the few segments before the first comment.
  let start = path.lastIndexOf('/', comment - 1);
  for (let tries = 0; start !== -1 && tries < 8; tries++) {
    if (detectSqli(path.slice(start + 1))) return true;
    start = start === 0 ? -1 : path.lastIndexOf('/', start - 1);
  }
  return false;
}
