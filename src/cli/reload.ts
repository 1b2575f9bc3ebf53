import { askMaster, masterAddress, masterPid } from './running.js';

/** Longest a reload may take: validation plus every new worker reporting ready. */
const RELOAD_ANSWER_TIMEOUT_MS = 120_000;

/** `reload`: 0 when the new generation serves, 1 with the reason when refused. */
export async function reloadCommand(option: string | undefined): Promise<number> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return 1;
  }
  try {
    const answer = await askMaster(address, { command: 'reload' }, RELOAD_ANSWER_TIMEOUT_MS);
    if (answer.ok) {
      process.stdout.write(`reloaded: generation ${answer.generation} serving\n`);
      return 0;
    }
    process.stderr.write(`reload refused: ${answer.reason ?? 'no reason given'}\n`);
    return 1;
  } catch (error) {
    process.stderr.write(`reload failed: ${(error as Error).message}\n`);
    return 1;
  }
}
