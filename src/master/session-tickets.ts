/**
 * TLS session resumption across workers: the master makes the session
 * ticket key and the session ID context, gives every worker the same ones
 * (TLS_INIT), and rotates the key in every worker at once (TLS_TICKET_KEY).
 * Node takes a single ticket key, so a rotation ends resumption of older
 * tickets; see src/tls/ticket-keys.ts for the interval chosen.
 */
import type { MasterMessage } from '../ipc/messages.js';
import { TICKET_KEY_ROTATION_MS, TicketKeyRing } from '../tls/ticket-keys.js';

/** One context for every generation: a reload does not end the sessions clients hold. */
const SESSION_CONTEXT_ID = 'miwidothttp sites';

/** How a cluster shares tickets between nodes: one context secret for all, and keys it rotates itself (install). */
export interface SharedTicketSettings {
  readonly contextSecret: Buffer;
}

export class SessionTickets {
  readonly #ring: TicketKeyRing;
  readonly #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly broadcast: (message: MasterMessage) => void,
    rotationMs = TICKET_KEY_ROTATION_MS,
    shared: SharedTicketSettings | null = null,
  ) {
    this.#ring = new TicketKeyRing(shared?.contextSecret);
    if (shared !== null) return; // the cluster rotates, for every node at once
    this.#timer = setInterval(() => broadcast({ type: 'TLS_TICKET_KEY', ticketKey: this.#ring.rotate().toString('base64') }), rotationMs);
    this.#timer.unref();
  }

  /** A key the cluster made: every worker takes it now. */
  install(key: Buffer, rotatedAtMs: number): void {
    const before = this.#ring.current();
    this.#ring.install(key, rotatedAtMs);
    if (!before.equals(key)) this.broadcast({ type: 'TLS_TICKET_KEY', ticketKey: key.toString('base64') });
  }

  forWorkers(): { ticketKey: string; sessionIdContext: string } {
    return { ticketKey: this.#ring.current().toString('base64'), sessionIdContext: this.#ring.sessionIdContext(SESSION_CONTEXT_ID) };
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
  }
}
