/**
 * miwidothttp nodes of one cluster for tests: each a real master (bin/
 * miwidothttp start) on its own loopback address (127.0.0.1, .2, .3, ...)
 * and the same port, joined to a test etcd cluster (etcd-cluster.ts).
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, cli, readText, TestServer, tempDir, waitFor, type CliResult } from './harness.js';
import type { CertFiles, EtcdCluster } from './etcd-cluster.js';

export const CLUSTER_TOKEN = 'test-cluster-token-0123456789abcdef';

export interface NodeOptions {
  /** [cluster.consensus] lines beyond the token. */
  readonly consensus?: string;
  /** The rest of the config: [[vhosts]], [security], [ssl]. */
  readonly body: string;
  readonly token?: string;
  /** Certificate files other than the cluster CA's for this name (identity tests). */
  readonly tls?: CertFiles & { caFile: string };
  /** [server] lines beyond the harness's. */
  readonly server?: string;
  /** [cluster] lines beyond the harness's (key_prefix, ...). */
  readonly cluster?: string;
  /** etcd client URLs other than the test etcd cluster's (a managed member's). */
  readonly endpoints?: readonly string[];
  /** The [cluster.etcd] table's lines. */
  readonly etcd?: string;
}

export class ClusterTestNode extends TestServer {
  options: NodeOptions | null = null;
  /** More environment for the node's processes (NODE_EXTRA_CA_CERTS for pebble). */
  extraEnv: NodeJS.ProcessEnv = {};

  constructor(
    readonly name: string,
    readonly address: string,
    private readonly etcd: EtcdCluster,
    /** The jail every node of the test shares (the sites live in it). */
    readonly site: string,
  ) {
    super();
  }

  get env(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.extraEnv, CLUSTER_TOKEN: this.options?.token ?? CLUSTER_TOKEN };
  }

  async configure(options: NodeOptions, port: number): Promise<void> {
    this.options = options;
    this.port = port;
    const tls = options.tls ?? {
      ...(await this.etcd.issue(this.name, [...new Set([this.address, '127.0.0.1'])])),
      caFile: this.etcd.caFile,
    };
    const text = [
      '[server]',
      `bind_address = "${this.address}"`,
      `http_port = ${port}`,
      `pid_file = "${this.pidFile}"`,
      'workers = 1',
      `state_dir = "${this.stateDir}"`,
      'shutdown_timeout = 5',
      options.server ?? '',
      '[process.isolation]',
      `chroot = "${this.site}"`,
      '[cluster]',
      `node_name = "${this.name}"`,
      `etcd_endpoints = [${(options.endpoints ?? this.etcd.endpoints).map((url) => `"${url}"`).join(', ')}]`,
      options.cluster ?? '',
      `ca_file = "${tls.caFile}"`,
      `cert_file = "${tls.certFile}"`,
      `key_file = "${tls.keyFile}"`,
      '[cluster.consensus]',
      'cluster_token = "${CLUSTER_TOKEN}"',
      options.consensus ?? 'allow_auto_join = true\nrejoin_delay = 1',
      options.etcd === undefined ? '' : `[cluster.etcd]\n${options.etcd}`,
      options.body,
    ].join('\n');
    writeFileSync(this.configFile, `${text}\n`);
  }

  /** Starts the node and waits until it serves (it joined and runs the cluster's configuration). */
  async startNode(): Promise<void> {
    this.output = '';
    this.launch = (argv) => ({ file: BIN, args: argv, env: this.env });
    const child = spawn(BIN, ['start', '-c', this.configFile], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.process = child;
    child.stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`${this.name} exited with ${code}:\n${this.output}`))),
    );
    await Promise.race([waitFor(`${this.name} started`, () => this.output.includes('"miwidothttp started"'), 60_000), exited]);
  }

  /** Starts a node expected to be refused: resolves with its exit code and output once it exits. */
  async startRefused(timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
    this.output = '';
    const child = spawn(BIN, ['start', '-c', this.configFile], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.process = child;
    child.stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    let timer: NodeJS.Timeout | undefined;
    try {
      const code = await Promise.race([
        new Promise<number | null>((resolve) => child.once('exit', resolve)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.name} was not refused:\n${this.output}`)), timeoutMs);
        }),
      ]);
      return { code, output: this.output };
    } finally {
      // A pending timer would keep the test process alive long after the test.
      clearTimeout(timer);
    }
  }

  run(...args: string[]): CliResult {
    return cli([...args, '-c', this.configFile], { env: this.env });
  }

  clusterStatus(): ClusterStatusJson {
    const result = this.run('cluster', 'status', '--json');
    if (result.status !== 0) throw new Error(`cluster status on ${this.name}: ${result.status} ${result.stderr}`);
    return JSON.parse(result.stdout) as ClusterStatusJson;
  }

  /** Audit events the node wrote (they go to its main log: JSON lines on stdout). */
  auditEvents(name: string): Record<string, unknown>[] {
    return this.logLines().filter((line) => line.audit === name);
  }

  logFileText(file: string): string {
    return readText(file);
  }
}

export interface ClusterStatusJson {
  node: string;
  read_only: boolean;
  quorum: boolean;
  read_only_since: string | null;
  config_revision: string | null;
  cluster_config_revision: string | null;
  nodes: { name: string; alive: boolean; config_revision: string | null; last_reload: string | null; last_reload_ok: boolean | null }[];
}

/** A jail shared by the test's nodes, with one site folder per name. */
export function sharedSite(...sites: string[]): string {
  const dir = tempDir('miwidothttp-cluster-site-');
  chmodSync(dir, 0o755);
  for (const site of sites) {
    mkdirSync(path.join(dir, site), { mode: 0o755 });
    writeFileSync(path.join(dir, site, 'index.html'), `${site}\n`, { mode: 0o644 });
  }
  return dir;
}
