/**
 * Steady load for tests that change the server under it (reloads, workers
 * coming and going): clients requesting `/` in a loop until stopped, each
 * failure kept with its cause.
 */
import http from 'node:http';

/** Requests in a loop until stopped, `keepAlive` or each on a new connection; every failure is kept. */
export function steadyLoad(port: number, clients: number, keepAlive = true): { stop(): Promise<{ ok: number; failed: string[] }> } {
  const agent = new http.Agent({ keepAlive, maxSockets: clients });
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ok += 1;
          else failed.push(`status ${res.statusCode}`);
          resolve();
        });
        res.on('error', (error) => {
          failed.push(`response ${error.message}`);
          resolve();
        });
      });
      req.on('error', (error) => {
        failed.push(`${(error as NodeJS.ErrnoException).code ?? error.message}${req.reusedSocket ? ' (reused socket)' : ''}`);
        resolve();
      });
    });
  const loops = Array.from({ length: clients }, async () => {
    while (running) await one();
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return { ok, failed };
    },
  };
}
