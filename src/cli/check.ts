import { BUILTIN_SOURCE, resolveConfigPath } from '../config/file.js';
import { loadConfig } from '../config/load.js';

/** `check`: 0 valid, 1 invalid with one line per problem on stderr. */
export function checkCommand(option: string | undefined): number {
  const file = resolveConfigPath(option);
  const result = loadConfig(file, process.env, 'check');
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`${line}\n`);
    return 1;
  }
  process.stdout.write(`${file ?? BUILTIN_SOURCE}: configuration is valid\n`);
  return 0;
}
