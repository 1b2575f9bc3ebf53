import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessAlive } from '../master/pid-file.js';
import { askMaster, controlSocketProblem, masterAddress, masterPid } from './running.js';

/** `stop`: graceful; returns once the master has exited. Stopping a stopped server is not an error. */
export async function stopCommand(option: string | undefined): Promise<number> {
  const address = masterAddress(option);
  const pid = masterPid(address);
  if (pid === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return 0;
  }
  try {
    await askMaster(address, { command: 'stop' }, 10_000);
  } catch (error) {
    // No control socket answer: the signal does the same, if we may send it.
    try {
      process.kill(pid, 'SIGTERM');
    } catch (signalError) {
      const code = (signalError as NodeJS.ErrnoException).code;
      const why = code === 'EPERM' ? `the master (pid ${pid}) is root's; run this as root` : controlSocketProblem(address, error);
      process.stderr.write(`stop: ${why}\n`);
      return 1;
    }
  }
  // The master bounds the drain by shutdown_timeout and then kills stragglers.
  while (isProcessAlive(pid)) await sleep(50);
  process.stdout.write(`stopped (pid ${pid})\n`);
  return 0;
}
