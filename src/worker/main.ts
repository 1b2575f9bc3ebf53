/**
 * Worker entry. It holds no privilege and reads no file of the master's:
 * its config arrives over its channel to the master (fd 3, framed; see
 * master-channel.ts), in the order CFG_INIT, CFG_LISTENER..., CFG_START,
 * each CFG_LISTENER naming the inherited descriptor of a socket that already
 * listens (the worker only accepts). It lives exactly as long as the
 * master: when the channel closes, it exits.
 *
 * TLS material (TLS_INIT, then TLS_CERTS and TLS_TICKET_KEY) and ACME
 * challenges (ACME_CHALLENGES) may come before CFG_START or at any time
 * after: the newest of each is what the servers use.
 */
import type { CompiledConfig, ListenerSpec } from '../config/types.js';
import type { MasterMessage, WorkerMessage } from '../ipc/messages.js';
import { createWorkerLogger } from '../logging/logger.js';
import type { CertificateMaterial } from '../tls/material.js';
import { AcmeChallenges } from './acme-challenges.js';
import { connectAudit } from './audit.js';
import { loadProxySupport } from './handlers/proxy-support.js';
import { MasterChannel } from './master-channel.js';
import { MasterLink } from './master-link.js';
import { WorkerServer } from './server.js';

/** Exit codes the master can tell apart. */
const EXIT_MASTER_GONE = 0;
const EXIT_BAD_MESSAGE = 70;
const EXIT_START_FAILED = 71;

/** The channel to the master (src/isolation/worker-command.ts CHANNEL_FD). */
const CHANNEL_FD = 3;

if (!MasterChannel.present(CHANNEL_FD)) {
  process.stderr.write('miwidothttp worker: must be started by the master (no channel at fd 3)\n');
  process.exit(EXIT_START_FAILED);
}

function die(code: number, why: string): never {
  process.stderr.write(`miwidothttp worker: ${why}\n`);
  process.exit(code);
}

// The master is the only parent we serve: if it dies, so do we (no orphans
// holding the port and serving a config nobody supervises).
const channel = new MasterChannel(
  CHANNEL_FD,
  (message) => receive(message),
  (why) => (why === null ? process.exit(EXIT_MASTER_GONE) : die(EXIT_BAD_MESSAGE, why)),
);

const send = (message: WorkerMessage): boolean => channel.send(message);
connectAudit(send);

let generation = 0;
let config: CompiledConfig | null = null;
const pendingListeners: { spec: ListenerSpec; handle: unknown }[] = [];
let server: WorkerServer | null = null;
/** The session ticket key and ID context (TLS_INIT), and the newest certificate set (TLS_INIT or TLS_CERTS). */
let tickets: { ticketKey: string; sessionIdContext: string } | null = null;
let certificates: CertificateMaterial[] = [];
let challenges: AcmeChallenges | null = null;
let log: ReturnType<typeof createWorkerLogger> | null = null;
const link = new MasterLink(send);

function receive(message: MasterMessage): void {
  if (link.receive(message)) return;
  switch (message.type) {
    case 'CTL_PING':
      // From the event loop, at once: the master's proof that this worker still turns.
      send({ type: 'CTL_PONG', seq: message.seq });
      return;
    case 'CFG_INIT':
      if (config !== null) die(EXIT_BAD_MESSAGE, 'CFG_INIT received twice');
      generation = message.generation;
      config = message.config;
      log = createWorkerLogger(config.server.logLevel).child({ generation });
      challenges = new AcmeChallenges(log);
      return;
    case 'CFG_LISTENER':
      // net.Server.listen({ fd }): an inherited socket that already listens; nothing is bound here.
      pendingListeners.push({ spec: message.listener, handle: { fd: message.fd } });
      return;
    case 'TLS_INIT':
      if (tickets !== null || server !== null) die(EXIT_BAD_MESSAGE, 'TLS_INIT out of turn');
      tickets = { ticketKey: message.ticketKey, sessionIdContext: message.sessionIdContext };
      certificates = message.certificates;
      return;
    case 'TLS_TICKET_KEY':
      if (server !== null) server.setTicketKey(message.ticketKey);
      else if (tickets !== null) tickets = { ...tickets, ticketKey: message.ticketKey };
      return;
    case 'TLS_CERTS':
      // Handshakes from now on get the new set; connections already open keep theirs.
      certificates = message.certificates;
      server?.setCertificates(message.certificates);
      return;
    case 'ACME_CHALLENGES':
      if (challenges === null) die(EXIT_BAD_MESSAGE, 'ACME_CHALLENGES before CFG_INIT');
      // Served from this moment (before CFG_START too: from the first connection on); the master waits for this to let the CA validate.
      if (challenges.apply(message.version, message.http01, message.tlsAlpn01)) send({ type: 'ACME_ACK', version: message.version });
      else
        log?.debug(
          { event: 'acme.stale_challenges', version: message.version, serving: challenges.version },
          'older challenge set ignored',
        );
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
}

async function start(): Promise<void> {
  if (config === null || log === null || challenges === null) die(EXIT_BAD_MESSAGE, 'CFG_START before CFG_INIT');
  const tls = tickets === null ? null : { certificates, ...tickets };
  server = new WorkerServer(config, log, link, { tls, challenges, proxy: await loadProxySupport(config) });
  try {
    for (const { spec, handle } of pendingListeners) await server.listen(spec, handle);
  } catch (error) {
    die(EXIT_START_FAILED, `cannot listen: ${(error as Error).message}`);
  }
  send({ type: 'CTL_READY', generation });
}

async function drain(deadlineMs: number): Promise<void> {
  if (server !== null) await server.drain(deadlineMs);
  await channel.end();
  process.exit(0);
}
