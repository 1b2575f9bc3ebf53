/**
 * [cluster] -> ClusterSpec (pure, as compile.ts): the endpoints and their
 * TLS, the quorum arithmetic, and which Raft timings belong where. The
 * node's certificate against the cluster CA is the preflight's
 * (preflight/cluster.ts).
 */
import { isIP } from 'node:net';
import { NODE_NAME } from '../cluster/node-identity.js';
import type { HostFacts } from './preflight/host.js';
import type { ConfigProblem } from './problem.js';
import type { RawConfig } from './schema.js';
import type { ClusterSpec } from './types.js';

/** etcd's defaults (etcd --help), used for a managed member whose timings are unset. */
const ETCD_ELECTION_TIMEOUT_MS = 1000;
const ETCD_HEARTBEAT_MS = 100;
/** etcd refuses an election timeout under five heartbeats (etcdmain config check). */
const MIN_HEARTBEATS_PER_ELECTION = 5;
/** A health read slower than this on an external cluster counts as a lost quorum: 2 x an election timeout of 500 ms. */
const EXTERNAL_HEALTH_TIMEOUT_MS = 1000;
/**
 * Debian's etcd package gives its user /var/lib/etcd; state_dir is root's
 * alone (0700), where the member's own user could not reach its data.
 */
const DEFAULT_MANAGED_DATA_DIR = '/var/lib/etcd/miwidothttp';
/** `cluster init` makes 43 characters; an operator's own must still not be guessable. */
const MIN_TOKEN_CHARS = 16;

const isLoopback = (host: string): boolean => {
  const bare = host.replace(/^\[|\]$/g, '');
  return bare === 'localhost' || bare === '::1' || (isIP(bare) === 4 && bare.startsWith('127.'));
};

export function compileCluster(
  raw: RawConfig,
  resolvePath: (file: string) => string,
  host: HostFacts,
  problems: ConfigProblem[],
): ClusterSpec | null {
  const cluster = raw.cluster;
  if (cluster === undefined || !cluster.enabled) return null;
  const consensus = cluster.consensus;
  const etcd = cluster.etcd;
  const problem = (key: string, message: string): void => {
    problems.push({ key, message });
  };

  const nodeName = cluster.node_name ?? (host.hostname ?? 'node').toLowerCase().split('.')[0] ?? 'node';
  if (cluster.node_name === undefined && !NODE_NAME.test(nodeName))
    problem('cluster.node_name', `this host's name ${JSON.stringify(nodeName)} is not a node name: set node_name`);

  if (consensus.cluster_token === undefined) problem('cluster.consensus.cluster_token', 'required: cluster_token = "${CLUSTER_TOKEN}"');
  else if (consensus.cluster_token.length < MIN_TOKEN_CHARS)
    problem('cluster.consensus.cluster_token', `at least ${MIN_TOKEN_CHARS} characters (\`miwidothttp cluster init\` makes one)`);
  if (!consensus.readonly_on_split)
    problem(
      'cluster.consensus.readonly_on_split',
      'false is not implemented: a node cut off from the etcd quorum cannot write what the others would see, so it always goes read-only',
    );
  if (consensus.quorum_size > consensus.min_cluster_size)
    problem('cluster.consensus.quorum_size', `must not exceed min_cluster_size (${consensus.min_cluster_size})`);
  else if (consensus.quorum_size * 2 <= consensus.min_cluster_size)
    problem(
      'cluster.consensus.quorum_size',
      `must be a majority of min_cluster_size (more than ${consensus.min_cluster_size / 2}): two halves of a split could both write otherwise`,
    );
  // With an external etcd, nodes and etcd members are counted apart; a managed node runs one member.
  if (etcd.managed && consensus.min_cluster_size > consensus.max_nodes)
    problem('cluster.consensus.min_cluster_size', `exceeds max_nodes (${consensus.max_nodes}): each node runs one member`);

  const timings = ['election_timeout_min', 'election_timeout_max', 'heartbeat_interval', 'max_append_entries'] as const;
  const setTimings = timings.filter((key) => consensus[key] !== undefined);
  if (!etcd.managed && setTimings.length > 0)
    problem(
      `cluster.consensus.${setTimings[0]}`,
      `${setTimings.join(', ')} belong to the etcd cluster (set them where etcd runs: --election-timeout, --heartbeat-interval), or set [cluster.etcd] managed = true`,
    );
  if (etcd.managed && consensus.max_append_entries !== undefined)
    problem(
      'cluster.consensus.max_append_entries',
      'etcd does not let the entries per append be set (it sends up to 1 MiB per message); remove the key',
    );
  const electionMin = consensus.election_timeout_min ?? ETCD_ELECTION_TIMEOUT_MS;
  const heartbeat = consensus.heartbeat_interval ?? ETCD_HEARTBEAT_MS;
  if (etcd.managed) {
    // etcd waits a random time in [election-timeout, 2 x election-timeout) before it calls an election.
    const expectedMax = electionMin * 2;
    if ((consensus.election_timeout_max ?? expectedMax) !== expectedMax)
      problem(
        'cluster.consensus.election_timeout_max',
        `etcd draws each election timeout from [election_timeout_min, 2 x election_timeout_min): set ${expectedMax} or remove it`,
      );
    if (electionMin < heartbeat * MIN_HEARTBEATS_PER_ELECTION)
      problem(
        'cluster.consensus.election_timeout_min',
        `must be at least ${MIN_HEARTBEATS_PER_ELECTION} x heartbeat_interval (${heartbeat})`,
      );
  }

  const clientUrl = etcd.client_url ?? 'https://127.0.0.1:2379';
  const peerUrl = etcd.peer_url ?? 'https://127.0.0.1:2380';
  const endpoints = cluster.etcd_endpoints ?? (etcd.managed ? [clientUrl] : []);
  if (endpoints.length === 0) problem('cluster.etcd_endpoints', 'list the etcd client URLs (or set [cluster.etcd] managed = true)');
  const urls: [string, string][] = endpoints.map((url, i) => [`cluster.etcd_endpoints[${i}]`, url]);
  if (etcd.managed) urls.push(['cluster.etcd.client_url', clientUrl], ['cluster.etcd.peer_url', peerUrl]);
  for (const [key, text] of urls) {
    const url = new URL(text);
    if (url.pathname !== '/' || url.search !== '' || url.username !== '') problem(key, 'scheme, host and port only');
    if (url.protocol === 'http:' && consensus.require_tls)
      problem(key, 'plain http: etcd must be reached over TLS (require_tls = false is for loopback tests only)');
    if (url.protocol === 'http:' && !isLoopback(url.hostname))
      problem(key, 'plain http off loopback: cluster traffic would cross the network unencrypted');
  }
  if (endpoints.length > 0 && endpoints.length < consensus.quorum_size)
    problem('cluster.etcd_endpoints', `${endpoints.length} endpoints cannot make quorum_size = ${consensus.quorum_size}`);

  const caFile = resolvePath(cluster.ca_file);
  const certFile = resolvePath(cluster.cert_file);
  const keyFile = resolvePath(cluster.key_file);

  let initialCluster: { name: string; peerUrl: string }[] = [{ name: nodeName, peerUrl }];
  if (etcd.initial_cluster !== undefined) {
    initialCluster = etcd.initial_cluster.map((entry) => {
      const cut = entry.indexOf('=');
      return { name: entry.slice(0, cut), peerUrl: entry.slice(cut + 1) };
    });
    if (new Set(initialCluster.map((member) => member.name)).size !== initialCluster.length)
      problem('cluster.etcd.initial_cluster', 'a member is listed twice');
  }

  return {
    nodeName,
    endpoints,
    keyPrefix: cluster.key_prefix,
    caFile,
    certFile,
    keyFile,
    token: consensus.cluster_token ?? '',
    minClusterSize: consensus.min_cluster_size,
    quorumSize: consensus.quorum_size,
    autoRejoin: consensus.auto_rejoin,
    rejoinDelayMs: consensus.rejoin_delay * 1000,
    maxNodes: consensus.max_nodes,
    allowAutoJoin: consensus.allow_auto_join,
    requireTls: consensus.require_tls,
    healthTimeoutMs:
      etcd.health_timeout ?? (etcd.managed ? 2 * (consensus.election_timeout_max ?? electionMin * 2) : EXTERNAL_HEALTH_TIMEOUT_MS),
    managed: etcd.managed
      ? {
          binary: etcd.etcd_binary,
          dataDir: resolvePath(etcd.data_dir ?? DEFAULT_MANAGED_DATA_DIR),
          clientUrl,
          peerUrl,
          initialCluster,
          runAsUser: etcd.run_as_user,
          electionTimeoutMs: electionMin,
          heartbeatIntervalMs: heartbeat,
        }
      : null,
  };
}
