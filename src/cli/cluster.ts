/**
 * `miwidothttp cluster status|push|admit|remove|rejoin` (asked of the
 * running master, which is a node) and `cluster init|cert` (files only: the
 * cluster CA, node certificates and the token, made before any node runs).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ClusterRequest, ClusterStatus, PushAnswer } from '../ipc/control.js';
import { createClusterCa, issueNodeCertificate } from '../cluster/pki.js';
import { askMaster, askRunningMaster, EXIT_NOT_RUNNING, masterAddress, masterPid } from './running.js';

/** How long `cluster push` waits: every node's staged reload, and then some. */
const PUSH_ANSWER_TIMEOUT_MS = 180_000;

export async function clusterStatusCommand(option: string | undefined, json: boolean): Promise<number> {
  const asked = await askRunningMaster<'cluster'>(option, 'cluster status', { command: 'cluster', action: 'status' });
  if ('exitCode' in asked) return asked.exitCode;
  const status = asked.answer as ClusterStatus;
  if (json) {
    const { ok: _ok, ...rest } = status;
    process.stdout.write(`${JSON.stringify(rest)}\n`);
    return 0;
  }
  const lines = [
    `node     ${status.node}  quorum ${status.quorum ? 'yes' : 'NO'}  ${status.read_only ? `READ-ONLY since ${status.read_only_since}: ${status.read_only_reason}` : 'writable'}`,
    `config   revision ${status.config_revision ?? '-'} running, ${status.cluster_config_revision ?? '-'} latest${status.stale ? ' (read from a member that may lag)' : ''}`,
    'nodes    name                 alive  revision  last reload',
  ];
  for (const node of status.nodes) {
    const reload =
      node.last_reload === null ? '-' : `${node.last_reload} ${node.last_reload_ok ? 'ok' : `refused: ${node.last_reload_error ?? ''}`}`;
    lines.push(
      `         ${node.name.padEnd(20)} ${(node.alive ? 'yes' : 'no').padEnd(6)} ${(node.config_revision ?? '-').padEnd(9)} ${reload}`,
    );
  }
  for (const member of status.etcd)
    lines.push(
      `etcd     ${member.endpoint}  ${member.answered ? (member.leader === null ? 'no leader' : `leader ${member.leader}`) : 'no answer'}`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** `push` answers ok: false with the nodes that refused: the report goes on stderr, one line per node. */
export async function clusterPushCommand(option: string | undefined, file: string): Promise<number> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return EXIT_NOT_RUNNING;
  }
  let answer: PushAnswer;
  try {
    answer = (await askMaster(
      address,
      { command: 'cluster', action: 'push', file: path.resolve(file) },
      PUSH_ANSWER_TIMEOUT_MS,
    )) as PushAnswer;
  } catch (error) {
    process.stderr.write(`cluster push: ${(error as Error).message}\n`);
    return 1;
  }
  if (answer.nodes === undefined) {
    process.stderr.write(`cluster push: ${answer.reason ?? 'refused'}\n`);
    return 1;
  }
  for (const node of answer.nodes) {
    if (node.ok) process.stdout.write(`${node.name}: running revision ${answer.revision}\n`);
    else process.stderr.write(`${node.name}: refused revision ${answer.revision}: ${node.reason ?? 'no reason given'}\n`);
  }
  return answer.ok === true ? 0 : 1;
}

export async function clusterActionCommand(option: string | undefined, request: ClusterRequest, what: string): Promise<number> {
  const asked = await askRunningMaster<'cluster'>(option, what, request);
  if ('exitCode' in asked) return asked.exitCode;
  process.stdout.write(`${(asked.answer as { detail?: string }).detail ?? 'done'}\n`);
  return 0;
}

const TOKEN_FILE = 'token';

/**
 * `cluster init`: a new cluster CA, a certificate for each node named, and
 * the cluster token, as root-only files in `dir`. Never overwrites: an
 * existing CA is another cluster's.
 */
export async function clusterInitCommand(dir: string, nodes: readonly string[], addresses: ReadonlyMap<string, string[]>): Promise<number> {
  const caFile = path.join(dir, 'ca.pem');
  if (existsSync(caFile)) {
    process.stderr.write(
      `cluster init: ${caFile} exists: a cluster CA is already there (add nodes with \`miwidothttp cluster cert NAME --dir ${dir}\`)\n`,
    );
    return 1;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createClusterCa(path.basename(path.resolve(dir)));
  writeFileSync(caFile, ca.certPem, { mode: 0o644 });
  writeFileSync(path.join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path.join(dir, TOKEN_FILE), `${token}\n`, { mode: 0o600 });
  for (const node of nodes) await writeNodeCertificate(dir, ca, node, addresses.get(node) ?? []);
  process.stdout.write(
    [
      `cluster CA: ${caFile} (its key ${path.join(dir, 'ca.key')} signs node certificates: keep it off the nodes)`,
      ...nodes.map((node) => `node ${node}: ${path.join(dir, `${node}.pem`)}, ${path.join(dir, `${node}.key`)}`),
      `cluster token: ${path.join(dir, TOKEN_FILE)} (give every node CLUSTER_TOKEN=$(cat ${path.join(dir, TOKEN_FILE)}) and cluster_token = "\${CLUSTER_TOKEN}")`,
      '',
    ].join('\n'),
  );
  return 0;
}

/** `cluster cert NAME`: one more node certificate from the CA in `dir`. */
export async function clusterCertCommand(dir: string, node: string, addresses: readonly string[]): Promise<number> {
  let ca: { certPem: string; keyPem: string };
  try {
    ca = { certPem: readFileSync(path.join(dir, 'ca.pem'), 'utf8'), keyPem: readFileSync(path.join(dir, 'ca.key'), 'utf8') };
  } catch (error) {
    process.stderr.write(`cluster cert: no cluster CA in ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}\n`);
    return 1;
  }
  if (existsSync(path.join(dir, `${node}.pem`))) {
    process.stderr.write(`cluster cert: ${path.join(dir, `${node}.pem`)} exists\n`);
    return 1;
  }
  await writeNodeCertificate(dir, ca, node, addresses);
  process.stdout.write(`node ${node}: ${path.join(dir, `${node}.pem`)}, ${path.join(dir, `${node}.key`)}\n`);
  return 0;
}

async function writeNodeCertificate(
  dir: string,
  ca: { certPem: string; keyPem: string },
  node: string,
  addresses: readonly string[],
): Promise<void> {
  const pair = await issueNodeCertificate(ca, node, addresses);
  writeFileSync(path.join(dir, `${node}.pem`), pair.certPem, { mode: 0o644 });
  writeFileSync(path.join(dir, `${node}.key`), pair.keyPem, { mode: 0o600 });
}
