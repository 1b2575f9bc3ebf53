/**
 * The worker's own server code (WorkerServer, the pipeline, the handlers) run
 * outside the master and the sandbox, so that `npm run bench` can measure
 * what the hardening stages cost: the same code with the full pipeline
 * against the same code with the route stage alone. Both variants run here,
 * in the same process model (a node:cluster with a shared listening socket,
 * as the master hands one to its workers), so the difference between them is
 * the stages and nothing else. With [ssl.domains] in the config the HTTPS
 * listener serves too (HTTP/1.1 and HTTP/2), with the certificates read here.
 *
 *   node dist/bench/pipeline-server.js --config FILE --pipeline full|routing-only [--workers 2]
 */
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import { createWorkerLogger } from '../src/logging/logger.js';
import { loadTlsMaterial, materialOf } from '../src/tls/material.js';
import type { PipelineVariant } from '../src/worker/pipeline/index.js';
import { loadProxySupport } from '../src/worker/handlers/proxy-support.js';
import { WORKER_V8_FLAGS } from '../src/isolation/worker-command.js';
import { UNLIMITED } from '../src/worker/master-link.js';
import { WorkerServer } from '../src/worker/server.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    pipeline: { type: 'string' },
    workers: { type: 'string', default: '2' },
  },
});

const variant = values.pipeline;
const workerCount = Number(values.workers);
if (
  values.config === undefined ||
  (variant !== 'full' && variant !== 'routing-only') ||
  !Number.isInteger(workerCount) ||
  workerCount < 1
) {
  process.stderr.write('usage: pipeline-server.js --config FILE --pipeline full|routing-only [--workers N]\n');
  process.exit(2);
}

// One shared socket, accepted by every worker: how the master hands its sockets over.
cluster.schedulingPolicy = cluster.SCHED_NONE;

if (cluster.isPrimary) {
  // Each worker with the V8 flags the master gives its workers.
  cluster.setupPrimary({ execArgv: [...process.execArgv, ...WORKER_V8_FLAGS] });
  for (let i = 0; i < workerCount; i += 1) cluster.fork();
  let stopping = false;
  const stop = (): void => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) process.stderr.write(`pipeline-server: worker ${worker.process.pid} died (${signal ?? code})\n`);
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(stopping ? 0 : 1);
    stop();
  });
} else {
  // Not `start`: one worker's code in this process, without the sandbox the preflight checks for.
  const loaded = loadConfig(values.config, process.env, false);
  if (!loaded.ok) {
    process.stderr.write(`${loaded.errors.join('\n')}\n`);
    process.exit(1);
  }
  const config = loaded.config;
  const log = createWorkerLogger(config.server.logLevel);
  // The certificates as the master would send them (TLS_INIT); a ticket key of this process's own.
  const tls =
    config.tls === null
      ? null
      : {
          certificates: materialOf(loadTlsMaterial(config.tls, log)),
          ticketKey: randomBytes(48).toString('base64'),
          sessionIdContext: 'pipeline-server',
        };
  const server = new WorkerServer(config, log, UNLIMITED, {
    tls,
    pipelineVariant: variant as PipelineVariant,
    proxy: await loadProxySupport(config),
  });
  for (const listener of config.listeners) await server.listen(listener, { host: listener.address, port: listener.port });
  process.on('SIGTERM', () => process.exit(0));
}
