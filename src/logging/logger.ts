/**
 * Logging. The master owns the only log destination (stdout, or
 * `[server].log_file`, reopened on SIGUSR1); workers write JSON lines to a
 * pipe the master reads, so a worker never opens a file and log rotation is
 * one reopen in one process. On a terminal, lines are pretty-printed.
 */
import { chmodSync, closeSync, constants, fstatSync, mkdirSync, openSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pino, type Logger } from 'pino';

const require = createRequire(import.meta.url);

/** pino-pretty, loaded only for a terminal: its ~30 modules are ~1 MB of every process's memory otherwise. */
function prettyPrinter(): (line: unknown) => string {
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
  return prettyFactory({ colorize: true });
}

export interface LogSink {
  /** Write one complete JSON log line (with its trailing newline). */
  write(line: string): void;
  /**
   * Reopen the log file after rotation (SIGUSR1); a no-op on stdout. Returns
   * why the file cannot be opened (it became a directory, say), and then keeps
   * writing to the file it had: the master never loses its log for a bad rotation.
   */
  reopen(): string | null;
  flushSync(): void;
}

/**
 * Opens `file` for appending, as the destination will, and closes it again:
 * the one-line reason it cannot be (ENOENT under /proc, EISDIR, ELOOP for a
 * link), said now rather than as an 'error' event that would end the master.
 */
export function probeAppend(file: string, mode = LOG_FILE_MODE): string | null {
  try {
    closeSync(openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, mode));
    return null;
  } catch (error) {
    return `cannot open ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

/**
 * mkdir -p for a log file's directory, one level at a time. Node's own
 * recursive mkdir never returns for a path under /proc (measured on Node
 * 24: it spins a core), which pino's `mkdir: true` would hit.
 */
export function ensureParentDirectory(file: string): void {
  const parts = path.dirname(path.resolve(file)).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts) {
    current = path.join(current, part);
    try {
      mkdirSync(current, { mode: 0o750 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}

/**
 * True when stdout is the journal (systemd sets JOURNAL_STREAM to its
 * "device:inode"): journald stamps every line itself, so ours would be a
 * second timestamp.
 */
function stdoutIsJournal(): boolean {
  const stream = process.env.JOURNAL_STREAM;
  if (stream === undefined) return false;
  try {
    const stat = fstatSync(1);
    return stream === `${stat.dev}:${stat.ino}`;
  } catch {
    return false;
  }
}

/**
 * Log bytes queued for a destination that cannot keep up (a slow disk, a
 * stalled pipe) past which lines are dropped rather than held: workers'
 * output goes through here, and must not grow the master without bound.
 */
const MAX_QUEUED_LOG_BYTES = 64 * 1024 * 1024;

/** pino writes `"time"` right after `"level"`; one replace per line removes it. */
const TIME_FIELD = /,"time":"[^"]*"/;

/**
 * Log files are never world-readable: they hold client addresses, paths and
 * the server's internals. Created 0640 (root and the group of whoever reads
 * logs, e.g. adm), and an existing one open to others is narrowed to that.
 */
export const LOG_FILE_MODE = 0o640;

export function restrictLogFile(file: string): void {
  try {
    const { mode } = statSync(file);
    if ((mode & 0o137) !== 0) chmodSync(file, mode & LOG_FILE_MODE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** @throws Error (one line) when the log file cannot be created or opened. */
export function createSink(logFile: string | null): LogSink {
  if (logFile !== null) {
    ensureParentDirectory(logFile);
    const problem = probeAppend(logFile);
    if (problem !== null) throw new Error(problem);
    restrictLogFile(logFile);
  }
  const boom =
    logFile === null
      ? pino.destination({ fd: 1, sync: false, maxLength: MAX_QUEUED_LOG_BYTES })
      : pino.destination({ dest: logFile, sync: false, mode: LOG_FILE_MODE, maxLength: MAX_QUEUED_LOG_BYTES });
  // A write or reopen that fails later (disk full, the file gone) must not end the master: said once on stderr.
  let failing = false;
  boom.on('error', (error: NodeJS.ErrnoException) => {
    if (failing) return;
    failing = true;
    process.stderr.write(`miwidothttp: log ${logFile ?? 'stdout'}: ${error.code ?? error.message}\n`);
  });
  boom.on('ready', () => (failing = false));
  const pretty = logFile === null && process.stdout.isTTY ? prettyPrinter() : null;
  const journal = logFile === null && stdoutIsJournal();
  return {
    write(line) {
      if (journal) {
        boom.write(line.replace(TIME_FIELD, ''));
        return;
      }
      if (pretty === null) {
        boom.write(line);
        return;
      }
      try {
        boom.write(pretty(JSON.parse(line)));
      } catch {
        boom.write(line);
      }
    },
    reopen() {
      if (logFile === null) return null;
      const problem = probeAppend(logFile);
      if (problem !== null) return problem;
      boom.reopen();
      return null;
    },
    flushSync() {
      try {
        boom.flushSync();
      } catch {
        // Nothing left to flush or the destination is gone; exiting anyway.
      }
    },
  };
}

const baseOptions = (level: string, role: string): pino.LoggerOptions => ({
  level,
  base: { role, pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
  // Secrets never reach logs: whatever a caller passes, these paths are masked.
  redact: {
    paths: ['*.authorization', '*.cookie', '*.api_token', '*.password', 'headers.authorization', 'headers.cookie', 'rawPacket'],
    censor: '[redacted]',
  },
});

export function createMasterLogger(sink: LogSink, level: string): Logger {
  return pino(baseOptions(level, 'master'), { write: (line: string) => sink.write(line) });
}

/** Workers log JSON lines to their stdout, a pipe the master reads. */
export function createWorkerLogger(level: string): Logger {
  return pino(baseOptions(level, 'worker'), pino.destination({ fd: 1, sync: false }));
}
