/**
 * How a worker process is started: the program, its arguments and its
 * environment. The sandbox helper (native-helpers/) goes in front of the
 * worker here; the rest of the master only sees `execPath` and `execArgv`,
 * which `child_process.fork` accepts.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CompiledConfig } from '../config/types.js';

export const WORKER_ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../worker/main.js');

export interface WorkerCommand {
  readonly execPath: string;
  readonly execArgv: string[];
  readonly env: NodeJS.ProcessEnv;
}

export function workerCommand(_config: CompiledConfig): WorkerCommand {
  return {
    // The runtime the master runs on: the pinned Node of package.json.
    execPath: process.execPath,
    execArgv: [],
    // A scrubbed environment: nothing of the operator's shell (NODE_OPTIONS
    // could preload code; secrets in variables stay with the master).
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', NODE_ENV: 'production' },
  };
}
