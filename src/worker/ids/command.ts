/**
 * One file over 400 lines: the shell reader and its command tables are one grammar; the tables are most of it.
 *
 * OS command injection: a shell metacharacter that starts a new command
 * (";", "|", "||", "&", "&&", a newline, `...`, $(...)) followed by a word
 * that, read as a shell reads words (quotes and backslashes removed:
 * c'a't, c\at; "{cat,/etc/passwd}" brace lists; "/???/c?t" globs), is a
 * command, and by arguments shaped like a shell command line ("-la",
 * "/etc/passwd", "10.0.0.1", "> /tmp/x", or nothing at all). "Tom & Jerry",
 * "a; b" or "dog; cat lovers" stay prose: the word after the metacharacter
 * is not a command, or its argument is an ordinary word.
 *
 * Also: $IFS used as a space, Shellshock function definitions
 * (CVE-2014-6271), /dev/tcp reverse shells, interpreter one-liners and
 * code-execution calls (system('..'), os.system(..), Runtime.exec).
 */

/** Commands no one writes in prose: any argument, or none, after a separator is enough. */
const UNMISTAKABLE_COMMANDS = new Set([
  'whoami',
  'uname',
  'ifconfig',
  'ipconfig',
  'systeminfo',
  'netstat',
  'nslookup',
  'powershell',
  'pwsh',
  'certutil',
  'bitsadmin',
  'mshta',
  'rundll32',
  'regsvr32',
  'wmic',
  'useradd',
  'usermod',
  'crontab',
  'chmod',
  'chown',
  'mkfifo',
  'busybox',
  'xxd',
  'nohup',
  'sudo',
  'tftp',
  'printenv',
  'cscript',
  'wscript',
  'msiexec',
  'getent',
  'tasklist',
  'taskkill',
  'lsb_release',
  'socat',
  'ncat',
  'netcat',
  'nmap',
  'traceroute',
  'tracert',
  'base64',
]);

/** Commands whose names are not English words: a bare "| whoami" is enough. */
const DISTINCT_COMMANDS = new Set([
  'whoami',
  'uname',
  'ifconfig',
  'ipconfig',
  'systeminfo',
  'netstat',
  'nslookup',
  'wget',
  'curl',
  'nc',
  'ncat',
  'netcat',
  'bash',
  'sh',
  'zsh',
  'ksh',
  'dash',
  'csh',
  'tcsh',
  'powershell',
  'pwsh',
  'certutil',
  'bitsadmin',
  'mshta',
  'rundll32',
  'regsvr32',
  'wmic',
  'cmd',
  'socat',
  'telnet',
  'python2',
  'python3',
  'busybox',
  'base64',
  'xxd',
  'nohup',
  'chmod',
  'chown',
  'crontab',
  'useradd',
  'usermod',
  'sudo',
  'mkfifo',
  'tftp',
  'printenv',
  'cscript',
  'wscript',
  'msiexec',
  'getent',
  'tasklist',
  'taskkill',
  'reg',
  'hostname',
  'lsb_release',
  'xterm',
  'nmap',
  'traceroute',
  'tracert',
]);

/** Short or English-like commands that may stand alone only when a separator, not "|", ends them: ";id", "&& ls". */
const BARE_COMMANDS = new Set(['id', 'ls', 'pwd', 'ps', 'env', 'dir', 'ver', 'reboot', 'halt', 'history', 'ipconfig', 'ifconfig']);

/** English-like commands that need an argument shaped like a shell argument: "; cat /etc/passwd". */
const ARGUMENT_COMMANDS = new Set([
  'cat',
  'ls',
  'id',
  'echo',
  'ping',
  'kill',
  'more',
  'less',
  'head',
  'tail',
  'find',
  'touch',
  'rm',
  'cp',
  'mv',
  'cd',
  'type',
  'dir',
  'grep',
  'awk',
  'sed',
  'tar',
  'dd',
  'od',
  'strings',
  'su',
  'ssh',
  'scp',
  'ftp',
  'nl',
  'tac',
  'export',
  'eval',
  'exec',
  'source',
  'printf',
  'dig',
  'host',
  'ps',
  'env',
  'set',
  'net',
  'sleep',
  'timeout',
  'shutdown',
  'del',
  'copy',
  'start',
  'wc',
  'file',
  'chgrp',
  'ln',
  'mkdir',
  'tee',
  'xargs',
  'readlink',
  'stat',
  'whois',
  'ver',
  'systemctl',
  'service',
  // Interpreters are also the names of languages people write about: "python & php".
  'python',
  'perl',
  'ruby',
  'php',
  'lua',
  'node',
  'gcc',
  'java',
]);

/** Commands whose one telling argument is a number, then the end: "; sleep 5", "$(sleep 5)". */
const DELAY_COMMANDS = new Set(['sleep', 'usleep', 'timeout']);

/** Argument words that make an otherwise English-looking command line certain. */
const TELLING_ARGUMENTS: Readonly<Record<string, readonly string[]>> = {
  ps: ['aux', 'ax', 'ef'],
  net: ['user', 'users', 'localgroup', 'group', 'share', 'view', 'use', 'session', 'accounts', 'start', 'stop'],
};

/** What "/???/c?t" may stand for: the commands worth the effort of a glob. */
const GLOB_TARGETS = [
  'cat',
  'nc',
  'sh',
  'bash',
  'id',
  'ls',
  'wget',
  'curl',
  'python',
  'perl',
  'whoami',
  'uname',
  'ncat',
  'netcat',
  'base64',
  'tac',
  'more',
  'less',
  'head',
  'tail',
];

function globMatches(pattern: string, word: string): boolean {
  // Iterative "?" and "*" matching with one backtrack point: linear in practice.
  let p = 0;
  let w = 0;
  let star = -1;
  let mark = 0;
  while (w < word.length) {
    const pc = pattern[p];
    if (pc === '?' || pc === word[w]) {
      p++;
      w++;
    } else if (pc === '*') {
      star = p++;
      mark = w;
    } else if (star !== -1) {
      p = star + 1;
      w = ++mark;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

function isShellSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c;
}

/** Characters that end a shell word. */
function endsWord(c: number, inBrace: boolean): boolean {
  switch (c) {
    case 0x20:
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x3b:
    case 0x7c:
    case 0x26:
    case 0x3c:
    case 0x3e:
    case 0x28:
    case 0x29:
    case 0x60:
      return true;
    case 0x2c:
    case 0x7d:
      return inBrace;
    default:
      return false;
  }
}

const MAX_WORD = 64;
/** Where the last readWord stopped (a module-level cursor instead of a result object). */
let wordEnd = 0;

/**
 * One shell word from i, quotes and backslashes removed, "$@" and "$*"
 * (empty in a command name) dropped. Sets wordEnd.
 */
function readWord(s: string, i: number, inBrace: boolean): string {
  const n = s.length;
  let word = '';
  let plainStart = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (endsWord(c, inBrace)) break;
    if (c === 0x27 || c === 0x22) {
      word += s.slice(plainStart, i);
      let close = s.indexOf(c === 0x27 ? "'" : '"', i + 1);
      if (close === -1) close = n;
      word += s.slice(i + 1, close).replace(/\\/g, '');
      i = close + 1;
      plainStart = i;
      continue;
    }
    if (c === 0x5c) {
      word += s.slice(plainStart, i);
      i += 2;
      plainStart = i - 1;
      if (s.charCodeAt(i - 1) === 0x0a) plainStart = i; // line continuation
      continue;
    }
    if (c === 0x24 /* $ */) {
      const d = s.charCodeAt(i + 1);
      if ((d === 0x28 && s.charCodeAt(i + 2) === 0x29) || (d === 0x7b && s.charCodeAt(i + 2) === 0x7d)) {
        // "wh$()oami", "wh${}oami": empty substitutions vanish
        word += s.slice(plainStart, i);
        i += 3;
        plainStart = i;
        continue;
      }
      if (d === 0x40 || d === 0x2a || (d >= 0x30 && d <= 0x39)) {
        word += s.slice(plainStart, i);
        i += 2;
        plainStart = i;
        continue;
      }
    }
    i++;
    if (i - plainStart + word.length > MAX_WORD * 4) break;
  }
  wordEnd = Math.min(i, n);
  word += s.slice(plainStart, wordEnd);
  return word.length > MAX_WORD ? word.slice(0, MAX_WORD) : word;
}

/** The command a word names: its base name, without ".exe". */
function commandName(word: string): string {
  let name = word;
  const slash = Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\'));
  if (slash !== -1) name = name.slice(slash + 1);
  if (name.length > 4 && name.charCodeAt(name.length - 4) === 0x2e && name.slice(-3).toLowerCase() === 'exe') name = name.slice(0, -4);
  return name;
}

type CommandClass = 'distinct' | 'argument' | null;

function classify(name: string): CommandClass {
  if (DISTINCT_COMMANDS.has(name)) return 'distinct';
  if (ARGUMENT_COMMANDS.has(name) || BARE_COMMANDS.has(name)) return 'argument';
  // cmd.exe is case-insensitive: "WHOAMI", "Net User".
  const lower = name.length <= 12 ? name.toLowerCase() : name;
  if (
    lower !== name &&
    (lower === 'whoami' ||
      lower === 'ipconfig' ||
      lower === 'systeminfo' ||
      lower === 'powershell' ||
      lower === 'certutil' ||
      lower === 'cmd' ||
      lower === 'net' ||
      lower === 'type' ||
      lower === 'dir')
  ) {
    return lower === 'net' || lower === 'type' || lower === 'dir' ? 'argument' : 'distinct';
  }
  if (name.length <= 12 && (name.indexOf('?') !== -1 || name.indexOf('*') !== -1) && /[a-z]/.test(name)) {
    for (const target of GLOB_TARGETS) if (globMatches(name, target)) return 'distinct';
  }
  return null;
}

/** An argument only a command line has: an option, a path, a host or file name, a variable, a redirection, a quoted string. */
function isShellArgument(raw: string): boolean {
  const c = raw.charCodeAt(0);
  if (c === 0x2d) return raw.length > 1; // -la, --help
  if (c === 0x2f || c === 0x7e) return true; // "/", "~/x"
  if (c === 0x24 || c === 0x5c || c === 0x27 || c === 0x22 || c === 0x25 || c === 0x7b || c === 0x40) return raw.length > 1; // $ \ ' " % { @
  if (c === 0x2e && raw.length > 1) return true; // ./x ../x .ssh
  if (raw.indexOf('$(') !== -1 || raw.indexOf('${') !== -1 || raw.indexOf('`') !== -1) return true; // substitutions: "XYZ$((7*7))XYZ"
  if (raw.indexOf('/') !== -1 || raw.indexOf('\\') !== -1 || raw.indexOf(':') !== -1) return true; // paths, URLs, host:port
  // A host or file name ("evil.com", "x.sh") or an IPv4 address; not a version number ("8.2").
  return /[a-z]\.[a-z]|\d\.\d+\.\d+\.\d/i.test(raw);
}

/** What follows a command: the end, or a character that ends the command. */
function endsCommand(c: number, pipeEnds: boolean): boolean {
  return (
    Number.isNaN(c) ||
    c === 0x3b ||
    c === 0x26 ||
    c === 0x0a ||
    c === 0x0d ||
    c === 0x60 ||
    c === 0x29 ||
    c === 0x23 ||
    c === 0x3e ||
    c === 0x3c ||
    (pipeEnds && c === 0x7c)
  );
}

/** The character at i, where a quote that closes the pasted-into context ("';id'") counts as an end. */
function followingAt(s: string, i: number): number {
  const c = i < s.length ? s.charCodeAt(i) : NaN;
  if ((c === 0x27 || c === 0x22) && (i + 1 >= s.length || endsCommand(s.charCodeAt(i + 1), true))) return NaN;
  return c;
}

function skipSpaces(s: string, i: number): number {
  while (i < s.length && isShellSpace(s.charCodeAt(i))) i++;
  return i;
}

/**
 * Whether a command line starts at i (just after a separator): a known
 * command, then the end of the command (the end of the value, a
 * separator, or the ")" or "`" that closes a substitution) or arguments of
 * the shape only a command line has.
 */
function commandLineAt(s: string, i: number): boolean {
  const separatorEnd = i;
  i = skipSpaces(s, i);
  while (s.charCodeAt(i) === 0x28 /* ( */ || s.charCodeAt(i) === 0x21 /* ! */) i = skipSpaces(s, i + 1);
  const inBrace = s.charCodeAt(i) === 0x7b;
  if (inBrace) i++;
  const wordStart = i;
  const word = readWord(s, i, inBrace);
  if (word.length === 0) return false;
  const name = commandName(word);
  const kind = classify(name);
  if (kind === null) return false;
  let j = wordEnd;
  if (inBrace) return s.charCodeAt(j) === 0x2c || s.charCodeAt(j) === 0x7d; // {cat,/etc/passwd}
  j = skipSpaces(s, j);
  const next = followingAt(s, j);
  const lower = name.toLowerCase();
  if (DELAY_COMMANDS.has(lower)) {
    const argument = readWord(s, j, false);
    return /^\d+(?:\.\d+)?$/.test(argument) && endsCommand(followingAt(s, skipSpaces(s, wordEnd)), true);
  }
  if (endsCommand(next, kind === 'distinct')) return kind === 'distinct' || BARE_COMMANDS.has(lower) || next === 0x3c || next === 0x3e;
  // "|id|" written tight is a pipeline; "| id |" with spaces is a table cell.
  if (next === 0x7c) return BARE_COMMANDS.has(lower) && j === wordEnd && wordStart === separatorEnd;
  if (next === 0x26 || next === 0x3b) return false;
  if (UNMISTAKABLE_COMMANDS.has(lower)) return true;
  const line = s.slice(j, Math.min(s.length, j + 160)).split(/[;|&\n`]/, 1)[0] ?? '';
  const argument = line.split(/\s/, 1)[0] ?? '';
  if (isShellArgument(argument)) return true;
  // A redirection later on the line: "echo hacked > /tmp/pwned", "cat x >> ~/.ssh/authorized_keys".
  if (/(?:^|\s)\d?>{1,2}\s{0,4}[/~$.\w]/.test(line)) return true;
  // "echo vulnerable" and nothing after it: the marker of a blind probe.
  if (lower === 'echo' && /^\s*\w+\s*$/.test(line) && endsCommand(followingAt(s, j + line.length), true)) return true;
  const telling = TELLING_ARGUMENTS[lower];
  return telling?.includes(argument.toLowerCase().replace(/^-/, '')) === true;
}

/** Shells and interpreters started with the option that makes them a reverse or inline shell: "nc -e", "sh -i", "cmd /c". */
const SHELL_OPTION =
  /(?:^|[\s;|&`({])(?:(?:nc|ncat|netcat)(?:\.exe)?\s{1,8}(?:-[a-z]{0,4}[ec]\b|--(?:sh-)?exec)|(?:ba|z|k|da)?sh\s{1,8}-i\b|(?:powershell|pwsh)(?:\.exe)?\s{1,8}-(?:e|ec|enc|encodedcommand|nop|noprofile|w|windowstyle|executionpolicy|ep)\b|cmd(?:\.exe)?\s{1,8}\/[ck]\s)/i;

/** Calls that run commands or open sockets in the usual interpreters, and PHP's exec family with a literal argument. */
const CODE_CALL =
  /\bfsockopen\s{0,4}\(|\bsocket\.socket\s{0,4}\(|\bos\.(?:system|popen)\s{0,4}\(|\bsubprocess\.(?:call|Popen|run|check_output)\s{0,4}\(|Runtime\.getRuntime\(\)\.exec\s{0,4}\(|\bIEX\s{0,4}\(|\bDownloadString\s{0,4}\(|\brequire\s{0,4}\(\s{0,4}['"](?:node:)?child_process|(?:^|[;|&`'"\s{}@])(?:system|exec|passthru|shell_exec|popen|proc_open|pcntl_exec)\s{0,4}\(\s{0,4}['"$`]/i;
/** Names a CODE_CALL ends with, right before its "(": looked up first so that most "(" cost nothing. */
const CALL_NAMES = new Set([
  'fsockopen',
  'socket',
  'system',
  'popen',
  'call',
  'run',
  'check_output',
  'exec',
  'iex',
  'downloadstring',
  'require',
  'passthru',
  'shell_exec',
  'proc_open',
  'pcntl_exec',
]);

/** Reverse-shell and download snippets without a call: Ruby and Perl sockets, PowerShell's WebClient, PHP code itself. */
const CODE_WORDS = /\bTCPSocket\.(?:new|open)\b|\buse\s{1,4}Socket\s{0,4};|New-Object\s{1,4}(?:System\.)?Net\.WebClient|<\?php\s/i;

/** Shellshock: a value that starts as a function definition ("() { :; };"), which bash imported from the environment (CVE-2014-6271). */
const SHELLSHOCK = /^\s{0,4}\(\s{0,4}\)\s{0,8}\{/;

/** A literal CODE_WORDS cannot do without: one cheap search before the expression. */
const CODE_WORDS_HINT = /ocket|bject|<\?/i;

/**
 * Two injections that run commands through other interpreters: server-side
 * includes ("<!--#exec cmd=..."), and Log4j lookups ("${jndi:ldap://...}",
 * CVE-2021-44228) including their nested-lookup disguises ("${${lower:j}ndi:").
 */
const SSI_OR_JNDI =
  /<!--#\s{0,4}(?:exec|include|echo|config|fsize|flastmod|printenv)\b|\$\{(?:jndi:|[^}]{0,32}\$\{(?:lower|upper|::-|env|sys|date)[^}]{0,32}\})/i;

/** Whether some "(" in `s` follows one of CALL_NAMES (spaces allowed between). */
function hasCallName(s: string): boolean {
  for (let open = s.indexOf('('); open !== -1; open = s.indexOf('(', open + 1)) {
    let end = open;
    while (end > 0 && isShellSpace(s.charCodeAt(end - 1))) end--;
    let start = end;
    while (start > 0 && end - start < 16) {
      const lower = s.charCodeAt(start - 1) | 0x20;
      if ((lower >= 0x61 && lower <= 0x7a) || s.charCodeAt(start - 1) === 0x5f) start--;
      else break;
    }
    if (end - start >= 3 && CALL_NAMES.has(s.slice(start, end).toLowerCase())) return true;
  }
  return false;
}

/**
 * Whether a backtick at i opens a command substitution rather than
 * Markdown inline code: it starts the value, is glued to what precedes it
 * ("127.0.0.1`id`"), or follows a separator ("; `id`"). Inline code
 * follows a space after a word, or an opening bracket ("see (`cmd.exe`)").
 */
function substitutionContext(s: string, i: number): boolean {
  // A run of backticks is Markdown (a "```" fence, a "``code``" span); in a shell "``" substitutes nothing.
  if (s.charCodeAt(i + 1) === 0x60 || (i > 0 && s.charCodeAt(i - 1) === 0x60)) return false;
  if (i === 0) return true;
  const before = s.charCodeAt(i - 1);
  if (before === 0x28 || before === 0x5b) return false;
  if (!isShellSpace(before) && before !== 0x0a && before !== 0x0d) return true;
  let j = i - 1;
  while (j >= 0 && (isShellSpace(s.charCodeAt(j)) || s.charCodeAt(j) === 0x0a || s.charCodeAt(j) === 0x0d)) j--;
  if (j < 0) return true;
  const c = s.charCodeAt(j);
  return c === 0x3b || c === 0x7c || c === 0x26 || c === 0x3d || c === 0x24;
}

/** Every rule needs one of these: a separator, "(", an option after a space, /dev/, PHP's "<?" or an SSI "<!--#". */
const COMMAND_TEST = /[;|&`$\n\r(]|[ \t][-/]|\/dev\/|<[?!]/;
const SEPARATOR_TEST = /[;|&`$\n\r]/;
const OPTION_TEST = /[ \t][-/]/;
/** Where the separator loop looks: one search per separator instead of a loop over every character. */
const SEPARATOR_SEARCH = /[;|&`$\n\r]/g;

/**
 * Code injection into a string an interpreter evaluates (PHP eval, CWE-95):
 * the value closes the string or statement it was pasted into (a quote,
 * then ";" or "."; or a ";" after at most a word), calls a function, and
 * comments out the rest of the line ("';exit(md5('x'));//",
 * "\".system('id');#"). Anchored at the start, where code a person writes
 * does not begin: "console.log(x); // 5" opens with a call, not a break.
 */
const CODE_BREAKOUT =
  /^[\w.-]{0,32}(?:['"][ \t]{0,4}[;.]|;)[ \t]{0,4}[a-z_][\w\\]{0,40}[ \t]{0,4}\([^\n]{0,200}\)[ \t]{0,4};?[ \t]{0,4}(?:\/\/|#)[^\n]{0,64}$/i;

/**
 * A data: URL whose base64 content is PHP or script: remote-file inclusion
 * through PHP's data:// wrapper (allow_url_include). "PD9" is "<?" in base64.
 */
const DATA_CODE = /\bdata:[\w/+.-]{0,64}(?:;[\w=-]{1,32}){0,3};base64,(?:PD9|PHN[jJ]cmlwd)/;

/** True when `input` (already percent-decoded, bounded by the caller) carries a shell command. */
export function detectCommand(input: string): boolean {
  const n = input.length;
  if (n < 2) return false;
  // Which rules can apply at all, by character searches the regexp engine runs fast.
  if (!COMMAND_TEST.test(input)) return false;
  if (input.indexOf('base64,') !== -1 && DATA_CODE.test(input)) return true; // "data:;base64," has the ";" COMMAND_TEST needs
  const separators = SEPARATOR_TEST.test(input);
  const paren = input.indexOf('(') !== -1;
  const dollar = input.indexOf('$') !== -1;
  const option = OPTION_TEST.test(input);
  if (dollar && (input.indexOf('$IFS') !== -1 || input.indexOf('${IFS') !== -1)) return true;
  if (input.indexOf('/dev/') !== -1 && /\/dev\/(?:tcp|udp)\//.test(input)) return true; // bash's network redirections
  if ((input.indexOf('${') !== -1 || input.indexOf('<!--#') !== -1) && SSI_OR_JNDI.test(input)) return true;
  if (paren) {
    if (SHELLSHOCK.test(input)) return true;
    if ((input.indexOf('//') !== -1 || input.indexOf('#') !== -1) && CODE_BREAKOUT.test(input)) return true;
    if (hasCallName(input) && CODE_CALL.test(input)) return true;
  }
  if (option && SHELL_OPTION.test(input)) return true;
  if ((separators || paren || input.indexOf('<?') !== -1) && CODE_WORDS_HINT.test(input) && CODE_WORDS.test(input)) {
    return true;
  }
  if (!separators) return false;
  SEPARATOR_SEARCH.lastIndex = 0;
  while (SEPARATOR_SEARCH.test(input)) {
    let i = SEPARATOR_SEARCH.lastIndex - 1;
    const c = input.charCodeAt(i);
    switch (c) {
      case 0x3b: // ;
      case 0x0a: // newline
      case 0x0d:
        if (commandLineAt(input, i + 1)) return true;
        break;
      case 0x7c: // | ||
      case 0x26: // & &&
        if (input.charCodeAt(i + 1) === c) i++;
        if (commandLineAt(input, i + 1)) return true;
        break;
      case 0x60: // `...`
        if (substitutionContext(input, i) && commandLineAt(input, i + 1)) return true;
        break;
      case 0x24: // $(...)
        if (input.charCodeAt(i + 1) === 0x28 && input.charCodeAt(i + 2) !== 0x28 && commandLineAt(input, i + 2)) return true;
        break;
      default:
        break;
    }
    SEPARATOR_SEARCH.lastIndex = i + 1;
  }
  return false;
}
