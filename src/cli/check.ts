import { BUILTIN_SOURCE, readConfigFile, resolveConfigPath } from '../config/file.js';
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
  // ${VAR} came from this shell; a reload takes them from the running master's environment instead.
  const read = file === null ? null : readConfigFile(file, process.env);
  const variables = read?.ok === true ? read.variables : [];
  if (variables.length > 0) {
    process.stdout.write(
      `note: ${variables.map((name) => `\${${name}}`).join(', ')} were read from this shell's environment; ` +
        `a reload reads them from the running master's, as it was started\n`,
    );
  }
  return 0;
}
