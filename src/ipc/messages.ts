/**
 * The closed catalogue of messages between master and worker.
 *
 * Master -> worker messages come from the privileged side and are trusted for
 * shape. Worker -> master messages come from the side that parses untrusted
 * bytes: each is checked for shape and size on arrival, and anything unknown
 * or malformed is fatal for that worker (the master kills it).
 */
import type { CompiledConfig, ListenerSpec } from '../config/types.js';

/** Master -> worker. */
export type MasterMessage =
  /** The generation's config; the listeners follow, one CFG_LISTENER each. */
  | { type: 'CFG_INIT'; generation: number; config: CompiledConfig }
  /** Sent with a bound (not listening) socket handle attached. */
  | { type: 'CFG_LISTENER'; listener: ListenerSpec }
  /** Every listener has been sent: start accepting and report CTL_READY. */
  | { type: 'CFG_START' }
  /** Stop accepting, finish in-flight requests, exit within deadlineMs. */
  | { type: 'CTL_DRAIN'; deadlineMs: number };

/** Worker -> master. */
export type WorkerMessage = { type: 'CTL_READY'; generation: number };

/** The largest worker message the master will parse (the channel itself is JSON). */
export const MAX_WORKER_MESSAGE_BYTES = 4096;

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Returns the message if it is exactly one of the catalogue's shapes, else null. */
export function parseWorkerMessage(value: unknown): WorkerMessage | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (JSON.stringify(value).length > MAX_WORKER_MESSAGE_BYTES) return null;
  const message = value as Record<string, unknown>;
  const keys = Object.keys(message).sort().join(',');
  switch (message.type) {
    case 'CTL_READY':
      return keys === 'generation,type' && isCount(message.generation) ? { type: 'CTL_READY', generation: message.generation } : null;
    default:
      return null;
  }
}
