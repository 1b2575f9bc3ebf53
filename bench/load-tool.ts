/**
 * One run of a load generator (wrk, h2load): its output collected, killed
 * if it overruns its duration by 10 s, and remembered until it exits so an
 * interrupted benchmark leaves none behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const running = new Set<ChildProcess>();

/** Kill every load generator still running (cleanup on interrupt). */
export function killLoadTools(): void {
  for (const child of running) child.kill('SIGKILL');
}

export interface LoadToolRun<T> {
  readonly durationSeconds: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Called once the tool is running, with its pid (for CPU sampling). */
  readonly onStart?: (pid: number) => void;
  /** Reads the tool's stdout and stderr together; throws when they hold no result. */
  readonly parse: (output: string) => T;
}

export function runLoadTool<T>(tool: string, args: readonly string[], run: LoadToolRun<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'], env: run.env ?? process.env });
    running.add(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    if (child.pid !== undefined) run.onStart?.(child.pid);
    const timer = setTimeout(() => child.kill('SIGKILL'), (run.durationSeconds + 10) * 1000);
    child.on('error', (error) => {
      clearTimeout(timer);
      running.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      if (code !== 0) {
        reject(new Error(`${tool} exited with ${signal ?? code}:\n${output}`));
        return;
      }
      try {
        resolve(run.parse(output));
      } catch (error) {
        reject(error as Error);
      }
    });
  });
}
