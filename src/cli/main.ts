/**
 * The command line: start, check, reload, stop, status, certs; and ban.
 * Every command that needs a config goes through the same load path.
 *
 * Each command's module is imported when that command runs: `start` loads
 * the master (TLS issuance, metrics, the schema), which `--version` and
 * `status` never need, so those answer in a fraction of a second.
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';

/** The version is package.json's: one place to change it. */
const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('miwidothttp')
  .description('Hardened HTTP server and reverse proxy: privileged master, sandboxed workers')
  .version(version, '-v, --version', 'print the version')
  .showHelpAfterError();

const configOption = ['-c, --config <file>', 'config file (default ./miwidothttp.toml, else the built-in default)'] as const;

program
  .command('start')
  .description('run master and workers in the foreground until stopped')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { startCommand } = await import('./start.js');
    const code = await startCommand(options.config);
    // The master has flushed its logs and is done: a library may still hold a handle (a gRPC channel dialing a
    // paused etcd member) that would keep the process, and `stop` waiting for it, alive for no one.
    process.exit(code);
  });
program
  .command('check')
  .description('validate a config without starting anything')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { checkCommand } = await import('./check.js');
    process.exitCode = checkCommand(options.config);
  });
program
  .command('reload')
  .description('ask the running master to reload its config (with -c: load that file from now on); waits for the outcome')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { reloadCommand } = await import('./reload.js');
    process.exitCode = await reloadCommand(options.config);
  });
program
  .command('stop')
  .description('stop gracefully; waits until the master has exited')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { stopCommand } = await import('./stop.js');
    process.exitCode = await stopCommand(options.config);
  });
program
  .command('status')
  .description('show the running master and its workers (exit 3 when not running)')
  .option(...configOption)
  .option('--json', 'one JSON object')
  .action(async (options: { config?: string; json?: boolean }) => {
    const { statusCommand } = await import('./status.js');
    process.exitCode = await statusCommand(options.config, options.json === true);
  });

program
  .command('certs')
  .description('list the certificates served: names, issuer, expiry, next renewal, last error (exit 3 when not running)')
  .option(...configOption)
  .option('--json', 'one JSON object')
  .action(async (options: { config?: string; json?: boolean }) => {
    const { certsCommand } = await import('./certs.js');
    process.exitCode = await certsCommand(options.config, options.json === true);
  });
const ban = program.command('ban').description("the running master's ban list (exit 3 when not running)");
ban
  .command('list')
  .description('list the bans in force')
  .option(...configOption)
  .option('--json', 'one JSON array')
  .action(async (options: { config?: string; json?: boolean }) => {
    const { banCommand } = await import('./ban.js');
    process.exitCode = await banCommand(options.config, { command: 'ban_list' }, options.json === true);
  });
ban
  .command('add <ip>')
  .description('ban a client IP (default for security.ddos.ban_seconds)')
  .option(...configOption)
  .option('--seconds <n>', 'how long', (value: string) => {
    if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new InvalidArgumentError('a whole number of seconds');
    return Number(value);
  })
  .option('--reason <text>', 'recorded with the ban and in the audit log', '')
  .action(async (ip: string, options: { config?: string; seconds?: number; reason: string }) => {
    const request = {
      command: 'ban_add',
      ip,
      reason: options.reason,
      ...(options.seconds !== undefined && { seconds: options.seconds }),
    } as const;
    const { banCommand } = await import('./ban.js');
    process.exitCode = await banCommand(options.config, request, false);
  });
ban
  .command('remove <ip>')
  .description('lift the ban on a client IP')
  .option(...configOption)
  .action(async (ip: string, options: { config?: string }) => {
    const { banCommand } = await import('./ban.js');
    process.exitCode = await banCommand(options.config, { command: 'ban_remove', ip }, false);
  });

const cluster = program.command('cluster').description('this node and its cluster (etcd): status, configuration pushes, membership');
cluster
  .command('status')
  .description('the nodes, their configuration revision and last reload, quorum and read-only state')
  .option(...configOption)
  .option('--json', 'one JSON object')
  .action(async (options: { config?: string; json?: boolean }) => {
    const { clusterStatusCommand } = await import('./cluster.js');
    process.exitCode = await clusterStatusCommand(options.config, options.json === true);
  });
cluster
  .command('push <file>')
  .description('push the shared part of FILE ([[vhosts]], [security], [ssl]) to every node; exit 0 when every live node runs it')
  .option(...configOption)
  .action(async (file: string, options: { config?: string }) => {
    const { clusterPushCommand } = await import('./cluster.js');
    process.exitCode = await clusterPushCommand(options.config, file);
  });
cluster
  .command('admit <name>')
  .description('admit node NAME (with allow_auto_join = false a new node waits for this)')
  .option(...configOption)
  .action(async (name: string, options: { config?: string }) => {
    const { clusterActionCommand } = await import('./cluster.js');
    process.exitCode = await clusterActionCommand(options.config, { command: 'cluster', action: 'admit', name }, 'cluster admit');
  });
cluster
  .command('remove <name>')
  .description('remove a stopped node from the cluster (frees its place under max_nodes)')
  .option(...configOption)
  .action(async (name: string, options: { config?: string }) => {
    const { clusterActionCommand } = await import('./cluster.js');
    process.exitCode = await clusterActionCommand(options.config, { command: 'cluster', action: 'remove', name }, 'cluster remove');
  });
cluster
  .command('rejoin')
  .description('leave read-only now that the quorum is back (what auto_rejoin does by itself)')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { clusterActionCommand } = await import('./cluster.js');
    process.exitCode = await clusterActionCommand(options.config, { command: 'cluster', action: 'rejoin' }, 'cluster rejoin');
  });
const addressList = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').filter((item) => item !== '')];
cluster
  .command('init')
  .description('make a cluster CA, node certificates and a cluster token (root-only files in --dir)')
  .option('--dir <dir>', 'where to write them', '/etc/miwidothttp/cluster')
  .option('--node <name>', 'a node to make a certificate for (repeatable; default: n1)', addressList)
  .option('--address <name=ip>', "a node's address for its certificate (a managed etcd member is reached there; repeatable)", addressList)
  .action(async (options: { dir: string; node?: string[]; address?: string[] }) => {
    const addresses = new Map<string, string[]>();
    for (const entry of options.address ?? []) {
      const [name, address] = entry.split('=');
      if (name === undefined || address === undefined) throw new InvalidArgumentError(`--address ${entry}: expected NAME=IP`);
      addresses.set(name, [...(addresses.get(name) ?? []), address]);
    }
    const { clusterInitCommand } = await import('./cluster.js');
    process.exitCode = await clusterInitCommand(options.dir, options.node ?? ['n1'], addresses);
  });
cluster
  .command('cert <name>')
  .description('one more node certificate from the cluster CA in --dir')
  .option('--dir <dir>', 'where the CA is', '/etc/miwidothttp/cluster')
  .option('--address <ip>', 'an address for the certificate (repeatable)', addressList)
  .action(async (name: string, options: { dir: string; address?: string[] }) => {
    const { clusterCertCommand } = await import('./cluster.js');
    process.exitCode = await clusterCertCommand(options.dir, name, options.address ?? []);
  });

await program.parseAsync(process.argv);
