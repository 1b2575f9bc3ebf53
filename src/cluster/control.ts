/**
 * `miwidothttp cluster ...` as the control socket carries it: one request
 * type, its action named, checked for shape and size like every other
 * control request.
 */
export type ClusterRequest =
  | { command: 'cluster'; action: 'status' }
  | { command: 'cluster'; action: 'push'; file: string }
  | { command: 'cluster'; action: 'admit'; name: string }
  | { command: 'cluster'; action: 'remove'; name: string }
  | { command: 'cluster'; action: 'rejoin' };

const NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
const MAX_PATH_CHARS = 900;

export function parseClusterRequest(request: Record<string, unknown>): ClusterRequest | null {
  switch (request.action) {
    case 'status':
    case 'rejoin':
      return { command: 'cluster', action: request.action };
    case 'push':
      return typeof request.file === 'string' && request.file.startsWith('/') && request.file.length <= MAX_PATH_CHARS
        ? { command: 'cluster', action: 'push', file: request.file }
        : null;
    case 'admit':
    case 'remove':
      return typeof request.name === 'string' && NAME.test(request.name)
        ? { command: 'cluster', action: request.action, name: request.name }
        : null;
    default:
      return null;
  }
}

/** One node in `cluster status --json`. */
export interface NodeView {
  name: string;
  alive: boolean;
  admitted: boolean;
  config_revision: string | null;
  last_reload: string | null;
  last_reload_ok: boolean | null;
  last_reload_error: string | null;
}

export interface ClusterStatus {
  ok: true;
  node: string;
  read_only: boolean;
  quorum: boolean;
  /** Why the node is read-only, and since when (ISO); null when writable. */
  read_only_reason: string | null;
  read_only_since: string | null;
  config_revision: string | null;
  cluster_config_revision: string | null;
  /** Read from a member that may lag (the node has no quorum). */
  stale: boolean;
  nodes: NodeView[];
  etcd: { endpoint: string; answered: boolean; leader: string | null }[];
}
