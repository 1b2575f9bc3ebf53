/**
 * [cluster.etcd] managed = true: the master runs this node's etcd member
 * itself (Debian's etcd), as its own unprivileged user (run_as_user,
 * default "etcd"), never as root: a bug in etcd must not be root's.
 *
 * - Its data dir and a copy of the node's certificate and key (etcd serves
 *   its client and peer ports with them, and must be able to read the key)
 *   belong to that user, mode 0700/0600.
 * - Raft timings come from [cluster.consensus]: --election-timeout =
 *   election_timeout_min (etcd draws each timeout from [t, 2t)),
 *   --heartbeat-interval; pre-vote is on, so a member cut off and coming
 *   back does not disrupt the others with a needless election.
 * - A founding member (listed in initial_cluster) starts the cluster; any
 *   other node takes etcd's safe path to membership: added as a learner
 *   (which does not vote, so the quorum is unchanged while it copies the
 *   log), started, promoted once etcd says it has caught up. Adding is
 *   refused while any member is unhealthy (a new voter would then make the
 *   quorum harder to reach, not easier).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { ClusterSpec } from '../config/types.js';
import { etcdProblem } from './etcd.js';
import type { ClusterKeys } from './secrets.js';

const READY_TIMEOUT_MS = 30_000;
const PROMOTE_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 5_000;

interface Account {
  readonly uid: number;
  readonly gid: number;
}

/** The uid and gid of `user`, through NSS (getent). */
function account(user: string): Account {
  const result = spawnSync('getent', ['passwd', user], { encoding: 'utf8' });
  const fields = result.status === 0 ? result.stdout.trim().split(':') : [];
  if (fields.length < 4)
    throw new Error(`cluster.etcd.run_as_user: no user ${JSON.stringify(user)} (Debian's etcd-server package makes "etcd")`);
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  if (uid === 0) throw new Error('cluster.etcd.run_as_user: the etcd member must not run as root');
  return { uid, gid };
}

/** The first directory from `dir` up to / that `user` may not pass through, or null. */
function untraversable(dir: string, user: Account): string | null {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const stat = statSync(at);
    const mode = stat.uid === user.uid ? stat.mode >> 6 : stat.gid === user.gid ? stat.mode >> 3 : stat.mode;
    if ((mode & 0o1) === 0) return at;
    if (at === '/') return null;
  }
}

function clientOf(endpoints: readonly string[], tls: { ca: string; cert: string; key: string }): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    credentials: endpoints.some((url) => url.startsWith('https:'))
      ? { rootCertificate: Buffer.from(tls.ca), certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) }
      : undefined,
    dialTimeout: 3000,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 5000 }),
  } as ConstructorParameters<typeof Etcd3>[0]);
}

export class ManagedMember {
  #child: ChildProcess | null = null;
  #stopping = false;

  private constructor(
    private readonly spec: ClusterSpec,
    private readonly log: Logger,
    private readonly tls: { ca: string; cert: string; key: string },
  ) {}

  /** Starts the local member (joining as a learner when it is new and not a founder); resolves once it answers. */
  static async start(spec: ClusterSpec, secrets: ClusterKeys, log: Logger): Promise<ManagedMember> {
    const managed = spec.managed!;
    const user = account(managed.runAsUser);
    const tls = {
      ca: readFileSync(spec.caFile, 'utf8'),
      cert: readFileSync(spec.certFile, 'utf8'),
      key: readFileSync(spec.keyFile, 'utf8'),
    };
    const member = new ManagedMember(spec, log, tls);
    mkdirSync(path.dirname(managed.dataDir), { recursive: true, mode: 0o755 });
    const blocked = untraversable(path.dirname(managed.dataDir), user);
    if (blocked !== null)
      throw new Error(
        `cluster.etcd.data_dir: ${managed.runAsUser} cannot reach ${managed.dataDir}: ${blocked} is closed to it (chmod o+x, or choose another data_dir)`,
      );
    const tlsDir = `${managed.dataDir}.tls`;
    for (const dir of [managed.dataDir, tlsDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chownSync(dir, user.uid, user.gid);
      chmodSync(dir, 0o700);
    }
    const files = { ca: path.join(tlsDir, 'ca.pem'), cert: path.join(tlsDir, 'member.pem'), key: path.join(tlsDir, 'member.key') };
    copyFileSync(spec.caFile, files.ca);
    copyFileSync(spec.certFile, files.cert);
    copyFileSync(spec.keyFile, files.key);
    for (const file of Object.values(files)) {
      chownSync(file, user.uid, user.gid);
      chmodSync(file, 0o600);
    }
    const existing = existsSync(path.join(managed.dataDir, 'member'));
    const founder = managed.initialCluster.some((entry) => entry.name === spec.nodeName);
    let initialCluster = managed.initialCluster.map((entry) => `${entry.name}=${entry.peerUrl}`).join(',');
    let state: 'new' | 'existing' = 'new';
    let learnerId: string | null = null;
    if (!existing && !founder) {
      ({ initialCluster, learnerId } = await member.#addAsLearner());
      state = 'existing';
    }
    member.#spawn(user, files, initialCluster, state, secrets);
    await member.#waitAnswering();
    if (learnerId !== null) await member.#promote(learnerId);
    return member;
  }

  async #addAsLearner(): Promise<{ initialCluster: string; learnerId: string }> {
    const managed = this.spec.managed!;
    const others = this.spec.endpoints.filter((url) => url !== managed.clientUrl);
    if (others.length === 0)
      throw new Error('cluster.etcd_endpoints: a new member needs the endpoints of the running members to join them');
    const client = clientOf(others, this.tls);
    try {
      const list = await client.cluster.memberList({});
      for (const existing of list.members) {
        const url = existing.clientURLs[0];
        if (url === undefined)
          throw new Error(`etcd member ${existing.name || existing.ID} has not started: adding a member now is refused`);
        const one = clientOf([url], this.tls);
        try {
          await one.maintenance.status();
        } catch (error) {
          throw new Error(`etcd member ${existing.name} (${url}) is unhealthy: adding a member now is refused (${etcdProblem(error)})`);
        } finally {
          one.close();
        }
      }
      const added = await client.cluster.memberAdd({ peerURLs: [managed.peerUrl], isLearner: true });
      this.log.info({ member: this.spec.nodeName, id: added.member.ID }, 'etcd member added as a learner');
      const entries = added.members.map((m) => `${m.name === '' ? this.spec.nodeName : m.name}=${m.peerURLs[0]}`);
      return { initialCluster: entries.join(','), learnerId: added.member.ID };
    } catch (error) {
      throw new Error(`cluster: cannot add this node's etcd member: ${etcdProblem(error)}`);
    } finally {
      client.close();
    }
  }

  #spawn(
    user: Account,
    files: { ca: string; cert: string; key: string },
    initialCluster: string,
    state: string,
    secrets: ClusterKeys,
  ): void {
    const managed = this.spec.managed!;
    const args = [
      `--name=${this.spec.nodeName}`,
      `--data-dir=${managed.dataDir}`,
      `--listen-client-urls=${managed.clientUrl}`,
      `--advertise-client-urls=${managed.clientUrl}`,
      `--listen-peer-urls=${managed.peerUrl}`,
      `--initial-advertise-peer-urls=${managed.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-state=${state}`,
      // Not a secret: it keeps two clusters started from the same list apart.
      `--initial-cluster-token=miwidothttp-${secrets.verifier.slice(0, 16)}`,
      `--election-timeout=${managed.electionTimeoutMs}`,
      `--heartbeat-interval=${managed.heartbeatIntervalMs}`,
      '--pre-vote=true',
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ];
    if (managed.clientUrl.startsWith('https:'))
      args.push('--client-cert-auth', `--trusted-ca-file=${files.ca}`, `--cert-file=${files.cert}`, `--key-file=${files.key}`);
    if (managed.peerUrl.startsWith('https:'))
      args.push(
        '--peer-client-cert-auth',
        `--peer-trusted-ca-file=${files.ca}`,
        `--peer-cert-file=${files.cert}`,
        `--peer-key-file=${files.key}`,
      );
    const child = spawn(managed.binary, args, {
      uid: user.uid,
      gid: user.gid,
      cwd: managed.dataDir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: '/usr/bin:/bin' },
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line.trim() !== '') this.log.warn({ component: 'etcd' }, line.slice(0, 2000));
    });
    child.on('exit', (code, signal) => {
      if (!this.#stopping) this.log.error({ code, signal }, 'the managed etcd member exited');
    });
    this.#child = child;
    this.log.info({ memberPid: child.pid, uid: user.uid, dataDir: managed.dataDir }, 'managed etcd member started');
  }

  async #waitAnswering(): Promise<void> {
    const client = clientOf([this.spec.managed!.clientUrl], this.tls);
    const until = Date.now() + READY_TIMEOUT_MS;
    try {
      for (;;) {
        if (this.#child?.exitCode !== null) throw new Error(`cluster: the managed etcd member exited (code ${this.#child?.exitCode})`);
        try {
          await client.maintenance.status();
          return;
        } catch (error) {
          if (Date.now() > until) throw new Error(`cluster: the managed etcd member does not answer: ${etcdProblem(error)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      client.close();
    }
  }

  /** etcd refuses to promote a learner that has not caught up with the leader: ask until it agrees. */
  async #promote(id: string): Promise<void> {
    const client = clientOf(this.spec.endpoints, this.tls);
    const until = Date.now() + PROMOTE_TIMEOUT_MS;
    try {
      for (;;) {
        try {
          await client.cluster.memberPromote({ ID: id });
          this.log.info({ member: this.spec.nodeName }, 'etcd learner caught up and promoted to a voting member');
          return;
        } catch (error) {
          if (Date.now() > until) throw new Error(`cluster: the new etcd member did not catch up in time: ${etcdProblem(error)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    } finally {
      client.close();
    }
  }

  /** `cluster remove NAME` with managed members: its etcd member goes too. */
  async removeMember(name: string): Promise<void> {
    const client = clientOf(this.spec.endpoints, this.tls);
    try {
      const list = await client.cluster.memberList({});
      const member = list.members.find((candidate) => candidate.name === name);
      if (member !== undefined) await client.cluster.memberRemove({ ID: member.ID });
    } finally {
      client.close();
    }
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    this.#stopping = true;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
