/**
 * A real etcd cluster for tests: Debian's `etcd` (3.4), three members on
 * 127.0.0.1 with client and peer ports of their own, fresh data dirs, mTLS
 * everywhere with a cluster CA made by the project's own `cluster init` code
 * (src/cluster/pki.ts). Failure injection: SIGKILL, SIGSTOP/SIGCONT and
 * restart of single members. `stop()` kills every member it started (and
 * only those) and removes the folder; a test process that dies first kills
 * them on exit.
 *
 *   const etcd = await startEtcdCluster();
 *   ... etcd.endpoints, etcd.ca (certPem, keyPem), etcd.issue('n1', ['127.0.0.1'])
 *   await etcd.stop();
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClusterCa, issueNodeCertificate, type PemPair } from '../../src/cluster/pki.js';
import { freePort, waitFor } from './harness.js';

export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';
/** Fast elections: a test sees a lost quorum, and a new leader, within a second. */
export const ELECTION_TIMEOUT_MS = 300;
const HEARTBEAT_MS = 50;

export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

interface Member {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly tls: CertFiles;
  process: ChildProcess | null;
}

export interface EtcdCluster {
  readonly dir: string;
  readonly endpoints: readonly string[];
  readonly ca: PemPair;
  readonly caFile: string;
  /** A certificate from the cluster CA for `name`, as files in the cluster's folder. */
  issue(name: string, addresses?: readonly string[]): Promise<CertFiles>;
  /** etcdctl with the test's own client certificate; returns stdout (throws on failure). */
  etcdctl(...args: string[]): string;
  /** Every key and value under `prefix`, read straight from etcd (no decoding). */
  rawValues(prefix: string): { key: string; value: string }[];
  pids(): number[];
  kill(index: number): void;
  pause(index: number): void;
  resume(index: number): void;
  /** Starts a killed member again on its data dir. */
  restart(index: number): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'miwidothttp-etcd-'));
  const logFile = path.join(dir, 'etcd.log');
  const ca = await createClusterCa('test etcd');
  const caFile = path.join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem);
  const issue = async (name: string, addresses: readonly string[] = ['127.0.0.1']): Promise<CertFiles> => {
    const pair = await issueNodeCertificate(ca, name, addresses);
    const certFile = path.join(dir, `${name}.pem`);
    const keyFile = path.join(dir, `${name}.key`);
    writeFileSync(certFile, pair.certPem);
    writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
    return { certFile, keyFile };
  };
  const members: Member[] = [];
  const ports = new Set<number>();
  const port = async (): Promise<number> => {
    for (;;) {
      const candidate = await freePort();
      if (!ports.has(candidate)) {
        ports.add(candidate);
        return candidate;
      }
    }
  };
  for (let index = 0; index < size; index++) {
    const name = `etcd${index}`;
    members.push({
      name,
      clientUrl: `https://127.0.0.1:${await port()}`,
      peerUrl: `https://127.0.0.1:${await port()}`,
      dataDir: path.join(dir, name),
      tls: await issue(name),
      process: null,
    });
  }
  const client = await issue('test-admin');
  const initialCluster = members.map((member) => `${member.name}=${member.peerUrl}`).join(',');
  const killAll = (): void => {
    for (const member of members)
      if (member.process?.exitCode === null && member.process.signalCode === null) member.process.kill('SIGKILL');
  };
  process.on('exit', killAll);

  const launch = (member: Member): void => {
    mkdirSync(member.dataDir, { recursive: true, mode: 0o700 });
    const log = openSync(logFile, 'a');
    try {
      member.process = spawn(
        ETCD_BIN,
        [
          `--name=${member.name}`,
          `--data-dir=${member.dataDir}`,
          `--listen-client-urls=${member.clientUrl}`,
          `--advertise-client-urls=${member.clientUrl}`,
          `--listen-peer-urls=${member.peerUrl}`,
          `--initial-advertise-peer-urls=${member.peerUrl}`,
          `--initial-cluster=${initialCluster}`,
          '--initial-cluster-state=new',
          `--initial-cluster-token=${path.basename(dir)}`,
          '--client-cert-auth',
          `--trusted-ca-file=${caFile}`,
          `--cert-file=${member.tls.certFile}`,
          `--key-file=${member.tls.keyFile}`,
          '--peer-client-cert-auth',
          `--peer-trusted-ca-file=${caFile}`,
          `--peer-cert-file=${member.tls.certFile}`,
          `--peer-key-file=${member.tls.keyFile}`,
          `--heartbeat-interval=${HEARTBEAT_MS}`,
          `--election-timeout=${ELECTION_TIMEOUT_MS}`,
          '--logger=zap',
          '--log-outputs=stderr',
          '--log-level=warn',
        ],
        { cwd: dir, stdio: ['ignore', log, log], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCD_UNSUPPORTED_ARCH: '' } },
      );
    } finally {
      closeSync(log);
    }
  };
  const etcdctl = (...args: string[]): string => {
    const result = spawnSync(
      ETCDCTL_BIN,
      [
        `--endpoints=${members.map((member) => member.clientUrl).join(',')}`,
        `--cacert=${caFile}`,
        `--cert=${client.certFile}`,
        `--key=${client.keyFile}`,
        '--command-timeout=5s',
        ...args,
      ],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCDCTL_API: '3' }, timeout: 20_000 },
    );
    if (result.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${result.stderr || result.error}`);
    return result.stdout;
  };
  const logs = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  for (const member of members) launch(member);
  try {
    await waitFor(
      'etcd cluster healthy',
      () => {
        try {
          etcdctl('endpoint', 'health');
          return true;
        } catch {
          return false;
        }
      },
      30_000,
    );
  } catch (error) {
    killAll();
    throw new Error(`${(error as Error).message}\n${logs().slice(-3000)}`);
  }

  const signal = (index: number, name: NodeJS.Signals): void => {
    const child = members[index]?.process;
    if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null)
      throw new Error(`etcd member ${index} is not running`);
    process.kill(child.pid, name);
  };
  return {
    dir,
    endpoints: members.map((member) => member.clientUrl),
    ca,
    caFile,
    issue,
    etcdctl,
    rawValues(prefix) {
      const out = etcdctl('get', '--prefix', prefix, '-w', 'json');
      const parsed = JSON.parse(out) as { kvs?: { key: string; value: string }[] };
      return (parsed.kvs ?? []).map((kv) => ({
        key: Buffer.from(kv.key, 'base64').toString('utf8'),
        value: Buffer.from(kv.value, 'base64').toString('utf8'),
      }));
    },
    pids: () => members.flatMap((member) => (member.process?.pid === undefined ? [] : [member.process.pid])),
    kill(index) {
      signal(index, 'SIGKILL');
    },
    pause(index) {
      signal(index, 'SIGSTOP');
    },
    resume(index) {
      signal(index, 'SIGCONT');
    },
    async restart(index) {
      const member = members[index]!;
      const child = member.process;
      if (child !== null && child.exitCode === null && child.signalCode === null) {
        await new Promise((resolve) => child.once('exit', resolve));
      }
      launch(member);
    },
    logs,
    async stop() {
      for (const member of members) {
        const child = member.process;
        if (child === null || child.exitCode !== null || child.signalCode !== null) continue;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        if (child.pid !== undefined) process.kill(child.pid, 'SIGCONT');
        child.kill('SIGKILL');
        // A timer left pending would keep the test process alive after the test.
        const deadline = new AbortController();
        await Promise.race([exited, sleep(5000, undefined, { signal: deadline.signal }).catch(() => undefined)]);
        deadline.abort();
      }
      process.off('exit', killAll);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
