/**
 * The audit log ([security.audit]): one writer, the master, so lines from
 * every worker never interleave. Workers send their security events over
 * IPC (already checked for shape and size by the IPC catalogue); the master
 * adds its own configuration changes and admin actions. JSON lines through
 * pino, or one text line per event. A log file that cannot be written (full
 * disk, wrong permissions) is reported in the main log and never stops
 * serving; SIGUSR1 reopens it.
 */
import { pino, type Logger } from 'pino';
import type { AuditSpec } from '../config/types.js';
import type { AuditEvent } from '../ipc/messages.js';
import { auditCategory, auditCategoryEnabled, type AuditCategory } from '../logging/audit-categories.js';
import { ensureParentDirectory, probeAppend, restrictLogFile } from '../logging/logger.js';

/** The audit log names clients and what they sent: root's alone (the main log is 0640). */
const AUDIT_FILE_MODE = 0o600;

export type { AuditCategory };

/** One event as the audit log writes it (the same fields, the same redaction), with its time. */
export interface AuditEntry {
  readonly time: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** Who in the server saw the event. */
export interface AuditSource {
  readonly role: 'master' | 'worker';
  readonly pid: number | undefined;
  readonly generation?: number;
  /** A worker's slot and uid: which worker said it. */
  readonly slot?: number;
  readonly uid?: number | null;
}

const LEVEL_OF: Record<AuditCategory, 'info' | 'warn'> = {
  configuration: 'info',
  security: 'warn',
  admin: 'info',
  authentication: 'warn',
  authorization: 'warn',
};

export class AuditLog {
  private readonly destination: ReturnType<typeof pino.destination> | null;
  private readonly logger: Logger;
  private failed = false;
  /** Sees every event, whether or not the config writes its category (the dashboard's recent events). */
  observer: ((entry: AuditEntry) => void) | null = null;

  constructor(
    private readonly spec: AuditSpec,
    /** The main log: where events go without a log_file, and where file problems are reported. */
    private readonly mainLog: Logger,
  ) {
    if (spec.logFile === null) {
      this.destination = null;
      // Into the main log, at the audit's own log_level, whatever the main log's.
      this.logger = mainLog.child({}, { level: spec.level });
      return;
    }
    try {
      ensureParentDirectory(spec.logFile);
      restrictLogFile(spec.logFile);
    } catch (error) {
      this.reportFailure(error as NodeJS.ErrnoException);
    }
    this.destination = pino.destination({ dest: spec.logFile, sync: false, mode: AUDIT_FILE_MODE });
    this.destination.on('error', (error: NodeJS.ErrnoException) => this.reportFailure(error));
    this.destination.on('ready', () => (this.failed = false));
    this.logger = pino(
      { level: spec.level, base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
      this.destination,
    );
  }

  write(reported: AuditCategory, event: AuditEvent, source: AuditSource, extra: Record<string, unknown> = {}): void {
    // Logins and access refusals are their own categories whoever reports them (a worker reports everything as security).
    const category = auditCategory(event.event, reported);
    const fields = {
      audit: event.event,
      category,
      ...event,
      event: undefined,
      ...extra,
      role: source.role,
      pid: source.pid,
      // The master's own events name the generation they concern in `extra` (a reload's new one).
      generation: source.generation ?? extra.generation,
      slot: source.slot,
      uid: source.uid ?? undefined,
    };
    this.observer?.({ time: new Date().toISOString(), fields });
    if (!auditCategoryEnabled(this.spec, category) || this.failed) return;
    if (this.destination !== null && this.spec.format === 'text') {
      if (!this.logger.isLevelEnabled(LEVEL_OF[category])) return;
      this.destination.write(`${textLine(new Date().toISOString(), fields)}\n`);
      return;
    }
    this.logger[LEVEL_OF[category]](fields, event.event);
  }

  reopen(): void {
    if (this.destination === null) return;
    try {
      ensureParentDirectory(this.spec.logFile!);
      // Never through a link planted at the name, nor into what is not a file: said, and the old file kept.
      const problem = probeAppend(this.spec.logFile!, AUDIT_FILE_MODE);
      if (problem !== null) {
        this.mainLog.error({ key: 'security.audit.log_file', problem }, 'audit log not reopened; still writing to the one it had');
        return;
      }
      this.destination.reopen();
    } catch (error) {
      this.reportFailure(error as NodeJS.ErrnoException);
    }
  }

  flush(): void {
    try {
      this.destination?.flushSync();
    } catch {
      // Unwritable: already reported.
    }
  }

  /** The log file could not be written (until SIGUSR1 reopens it, or the destination recovers). */
  get failing(): boolean {
    return this.failed;
  }

  private reportFailure(error: NodeJS.ErrnoException): void {
    if (!this.failed)
      this.mainLog.error(
        { file: this.spec.logFile, code: error.code },
        'audit log cannot be written; serving goes on (fix it, then send SIGUSR1)',
      );
    this.failed = true;
  }
}

/** `time event key=value ...`, values quoted when they hold spaces, quotes or control characters. */
function textLine(time: string, fields: Record<string, unknown>): string {
  const parts = [time, String(fields.audit)];
  for (const [key, value] of Object.entries(fields)) {
    if (key === 'audit' || value === undefined) continue;
    const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
    parts.push(`${key}=${/^[\x21-\x7e]*$/.test(text) && !text.includes('"') ? text : JSON.stringify(text)}`);
  }
  return parts.join(' ');
}
