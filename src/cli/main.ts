/**
 * The command line (contract.md): start, check, reload, stop, status.
 * Every command that needs a config goes through the same load path.
 */
import { Command } from 'commander';
import { checkCommand } from './check.js';
import { reloadCommand } from './reload.js';
import { startCommand } from './start.js';
import { statusCommand } from './status.js';
import { stopCommand } from './stop.js';

const program = new Command('miwidothttp')
  .description('Hardened HTTP server and reverse proxy: privileged master, sandboxed workers')
  .version('0.1.0')
  .showHelpAfterError();

const configOption = ['-c, --config <file>', 'config file (default ./miwidothttp.toml, else the built-in default)'] as const;

program.command('start').description('run master and workers in the foreground until stopped').option(...configOption).action(async (options: { config?: string }) => {
  process.exitCode = await startCommand(options.config);
});
program.command('check').description('validate a config without starting anything').option(...configOption).action((options: { config?: string }) => {
  process.exitCode = checkCommand(options.config);
});
program.command('reload').description('ask the running master to reload its config; waits for the outcome').option(...configOption).action(async (options: { config?: string }) => {
  process.exitCode = await reloadCommand(options.config);
});
program.command('stop').description('stop gracefully; waits until the master has exited').option(...configOption).action(async (options: { config?: string }) => {
  process.exitCode = await stopCommand(options.config);
});
program
  .command('status')
  .description('show the running master and its workers (exit 3 when not running)')
  .option(...configOption)
  .option('--json', 'one JSON object')
  .action(async (options: { config?: string; json?: boolean }) => {
    process.exitCode = await statusCommand(options.config, options.json === true);
  });

await program.parseAsync(process.argv);
