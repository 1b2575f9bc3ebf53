import path from 'node:path';
import { askMaster, controlSocketProblem, masterAddress, masterPid } from './running.js';

/** Longest a reload may take: validation plus every new worker reporting ready. */
const RELOAD_ANSWER_TIMEOUT_MS = 120_000;

/**
 * `reload [-c FILE]`: 0 when the new generation serves, 1 with the reason
 * when refused. With -c, the master loads FILE (as `caddy reload --config`)
 * and reads it for later reloads too; without, it reloads its own file.
 */
export async function reloadCommand(option: string | undefined): Promise<number> {
  const address = masterAddress(option);
  // A file that does not even parse names no master to ask, and would be refused by it anyway.
  if (address.unreadable !== null) {
    process.stderr.write(`reload refused: ${address.unreadable}\n`);
    return 1;
  }
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return 1;
  }
  try {
    const request = option === undefined ? { command: 'reload' as const } : { command: 'reload' as const, config: path.resolve(option) };
    const answer = await askMaster(address, request, RELOAD_ANSWER_TIMEOUT_MS);
    if (answer.ok) {
      process.stdout.write(`reloaded: generation ${answer.generation} serving\n`);
      return 0;
    }
    process.stderr.write(`reload refused: ${answer.reason ?? 'no reason given'}\n`);
    return 1;
  } catch (error) {
    process.stderr.write(`reload failed: ${controlSocketProblem(address, error)}\n`);
    return 1;
  }
}
