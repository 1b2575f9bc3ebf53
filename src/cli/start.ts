import { resolveConfigPath } from '../config/file.js';
import { loadConfig } from '../config/load.js';
import { runMaster } from '../master/main.js';

/** `start`: load through the same path as `check`, then run the master in the foreground. */
export async function startCommand(option: string | undefined): Promise<number> {
  const file = resolveConfigPath(option);
  const result = loadConfig(file, process.env, 'start');
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`${line}\n`);
    return 1;
  }
  return runMaster(file, result.config);
}
