/**
 * The command line: start, check, reload, stop, status, certs; and ban.
 * Every command that needs a config goes through the same load path.
 *
 * Each command's module is imported when that command runs: `start` loads
 * the master (TLS issuance, metrics, the schema), which `--version` and
 * `status` never need, so those answer in a fraction of a second.
 */
import { Command, InvalidArgumentError } from 'commander';

const program = new Command('miwidothttp')
  .description('Hardened HTTP server and reverse proxy: privileged master, sandboxed workers')
  .version('0.1.0')
  .showHelpAfterError();

const configOption = ['-c, --config <file>', 'config file (default ./miwidothttp.toml, else the built-in default)'] as const;

program
  .command('start')
  .description('run master and workers in the foreground until stopped')
  .option(...configOption)
  .action(async (options: { config?: string }) => {
    const { startCommand } = await import('./start.js');
    process.exitCode = await startCommand(options.config);
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
  .description('ask the running master to reload its config; waits for the outcome')
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

await program.parseAsync(process.argv);
