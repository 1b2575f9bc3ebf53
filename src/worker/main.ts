/**
 * Worker entry. It holds no privilege and reads no file of the master's:
 * its config and listening sockets arrive over the IPC channel, in the order
 * CFG_INIT, CFG_LISTENER..., CFG_START. It lives exactly as long as the
 * master: when the channel closes, it exits.
 */
import type { CompiledConfig, ListenerSpec } from '../config/types.js';
import type { MasterMessage, WorkerMessage } from '../ipc/messages.js';
import { createWorkerLogger } from '../logging/logger.js';
import { MasterLink } from './master-link.js';
import { WorkerServer } from './server.js';

/** Exit codes the master can tell apart. */
const EXIT_MASTER_GONE = 0;
const EXIT_BAD_MESSAGE = 70;
const EXIT_START_FAILED = 71;

if (!process.send) {
  process.stderr.write('miwidothttp worker: must be started by the master (no IPC channel)\n');
  process.exit(EXIT_START_FAILED);
}

// The master is the only parent we serve: if it dies, so do we (no orphans
// holding the port and serving a config nobody supervises).
process.on('disconnect', () => process.exit(EXIT_MASTER_GONE));

const send = (message: WorkerMessage): void => {
  process.send?.(message);
};

let generation = 0;
let config: CompiledConfig | null = null;
const pendingListeners: { spec: ListenerSpec; handle: unknown }[] = [];
let server: WorkerServer | null = null;
let tlsMaterial: Omit<Extract<MasterMessage, { type: 'TLS_INIT' }>, 'type'> | null = null;
const link = new MasterLink(send);

function die(code: number, why: string): never {
  process.stderr.write(`miwidothttp worker: ${why}\n`);
  process.exit(code);
}

process.on('message', (message: MasterMessage, handle: unknown) => {
  if (link.receive(message)) return;
  switch (message.type) {
    case 'CFG_INIT':
      if (config !== null) die(EXIT_BAD_MESSAGE, 'CFG_INIT received twice');
      generation = message.generation;
      config = message.config;
      return;
    case 'CFG_LISTENER':
      if (handle === undefined) die(EXIT_BAD_MESSAGE, `listener ${message.listener.id} arrived without a socket`);
      pendingListeners.push({ spec: message.listener, handle });
      return;
    case 'TLS_INIT':
      if (tlsMaterial !== null || server !== null) die(EXIT_BAD_MESSAGE, 'TLS_INIT out of turn');
      tlsMaterial = { certificates: message.certificates, ticketKey: message.ticketKey, sessionIdContext: message.sessionIdContext };
      return;
    case 'TLS_TICKET_KEY':
      server?.setTicketKey(message.ticketKey);
      return;
    case 'CFG_START':
      void start();
      return;
    case 'CTL_DRAIN':
      void drain(message.deadlineMs);
      return;
    default:
      die(EXIT_BAD_MESSAGE, `unknown message ${JSON.stringify((message as { type?: unknown }).type)}`);
  }
});

async function start(): Promise<void> {
  if (config === null) die(EXIT_BAD_MESSAGE, 'CFG_START before CFG_INIT');
  const log = createWorkerLogger(config.server.logLevel).child({ generation });
  server = new WorkerServer(config, log, link, tlsMaterial);
  try {
    for (const { spec, handle } of pendingListeners) await server.listen(spec, handle);
  } catch (error) {
    die(EXIT_START_FAILED, `cannot listen: ${(error as Error).message}`);
  }
  send({ type: 'CTL_READY', generation });
}

async function drain(deadlineMs: number): Promise<void> {
  if (server !== null) await server.drain(deadlineMs);
  process.disconnect();
  process.exit(0);
}
