/**
 * Loaded with `--import` into a CLI process (NODE_OPTIONS): every module the
 * process resolves, written as one JSON array on fd 3 when it exits, so a
 * test can tell which modules a command loads.
 */
import { writeSync } from 'node:fs';
import { registerHooks } from 'node:module';

const resolved = new Set<string>();
registerHooks({
  resolve(specifier, context, nextResolve) {
    const result = nextResolve(specifier, context);
    resolved.add(result.url);
    return result;
  },
});
process.on('exit', () => writeSync(3, `${JSON.stringify([...resolved])}\n`));
