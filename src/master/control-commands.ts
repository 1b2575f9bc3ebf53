/**
 * What the master does for each control-socket request (ipc/control.ts):
 * report, reload, stop, list and change bans, describe certificates. Every
 * request that changes something is audited as an admin action.
 */
import type { AuditLog } from './audit-log.js';
import type { AbuseControl } from './abuse/index.js';
import type { Ban } from './abuse/bans.js';
import { certificateViews, type CertificateManager } from './certificate-manager.js';
import type { ListenerSet } from './listeners.js';
import type { Supervisor } from './supervisor.js';
import type { BanView, ControlAnswer, ControlAnswers, ControlRequest } from '../ipc/control.js';
import type { ClusterNode } from '../cluster/node.js';

/** What the commands act on: the master's parts, and its own reload and stop. */
export interface ControlTargets {
  readonly supervisor: Supervisor;
  readonly listeners: ListenerSet;
  readonly abuse: AbuseControl;
  readonly issued: CertificateManager;
  readonly audit: AuditLog;
  /** Reload, staged (master/main.ts): `file` when `reload -c FILE` named one, else the master's own config. */
  readonly reload: (trigger: string, file?: string) => Promise<ControlAnswers['reload']>;
  /** Drain and exit. */
  readonly stop: (why: string) => Promise<void>;
  /** This node in its cluster, or null alone: bans then act cluster-wide, and `cluster ...` is answered. */
  readonly cluster: ClusterNode | null;
}

/** A ban as the CLI shows it: the end as an ISO date. */
const banView = (ban: Ban): BanView => ({ ...ban, until: new Date(ban.until).toISOString() });

/** The handler of the control socket (master/control.ts). */
export function controlCommands(targets: ControlTargets): (request: ControlRequest) => Promise<ControlAnswer> {
  const { supervisor, listeners, abuse, issued, audit, cluster } = targets;
  const self = { role: 'master', pid: process.pid } as const;
  return async (request) => {
    switch (request.command) {
      case 'status':
        return {
          ok: true,
          master: {
            pid: process.pid,
            generation: supervisor.generation,
            config: supervisor.config.source,
            uptimeSeconds: Math.round(process.uptime()),
          },
          workers: await supervisor.status(),
          listeners: listeners.list().map((listener) => listener.spec),
          cluster: cluster?.summary() ?? null,
        };
      case 'reload':
        audit.write('admin', { event: 'admin.reload' }, self, {
          via: 'control socket',
          ...(request.config !== undefined && { config: request.config }),
        });
        return targets.reload('control socket', request.config);
      case 'stop':
        audit.write('admin', { event: 'admin.stop' }, self, { via: 'control socket' });
        setImmediate(() => void targets.stop('control socket'));
        return { ok: true, pid: process.pid };
      case 'certs':
        return {
          ok: true,
          certificates: certificateViews(supervisor.manualCertificates, issued.status()),
          lastError: supervisor.certificateError,
        };
      case 'ban_list':
        return { ok: true, bans: abuse.listBans().map(banView) };
      case 'ban_add': {
        const refused = cluster?.writeRefusal('ban writes') ?? null;
        if (refused !== null) return { ok: false, reason: refused };
        // Audited by the ban list itself (admin.ban_add), like every ban.
        const added = abuse.adminBan(request.ip, request.seconds, request.reason);
        if (!added.ok) return added;
        // Clustered: answered once every node can see it (or why it holds here only).
        const unshared = (await cluster?.bans.settled(added.ban.ip)) ?? null;
        return unshared === null ? { ok: true, ban: banView(added.ban) } : { ok: false, reason: unshared };
      }
      case 'ban_remove': {
        const refused = cluster?.writeRefusal('ban writes') ?? null;
        if (refused !== null) return { ok: false, reason: refused };
        const lifted = abuse.adminUnban(request.ip);
        if (!lifted.ok) return { ok: false, reason: lifted.reason ?? 'not banned' };
        const unshared = (await cluster?.bans.settled(request.ip)) ?? null;
        return unshared === null ? { ok: true } : { ok: false, reason: unshared };
      }
      case 'cluster':
        return cluster === null
          ? { ok: false, reason: 'this node is not clustered ([cluster] is absent or disabled)' }
          : cluster.control(request);
    }
  };
}
