/**
 * docs/lifecycle.md and the pipeline say the same thing: the stages its
 * table names (numbered rows, a stage name in backticks) are the stages of
 * src/worker/pipeline/index.ts, in the same order, as errors.test.ts keeps
 * docs/errors.md in step with the error catalogue.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import pino from 'pino';
import { compile } from '../../src/config/compile.js';
import { configSchema } from '../../src/config/schema.js';
import { AcmeChallenges } from '../../src/worker/acme-challenges.js';
import { UNLIMITED } from '../../src/worker/master-link.js';
import { WorkerMetrics } from '../../src/worker/metrics.js';
import { createPipeline } from '../../src/worker/pipeline/index.js';
import { ROOT } from '../support/harness.js';

/** The stage rows of the table: [number, name], in the document's order. */
function documentedStages(): [number, string][] {
  return readFileSync(path.join(ROOT, 'docs/lifecycle.md'), 'utf8')
    .split('\n')
    .map((line) => line.split('|').map((cell) => cell.trim()))
    .filter((cells) => /^\d+$/.test(cells[1] ?? '') && /^`[a-z-]+`$/.test(cells[2] ?? ''))
    .map((cells): [number, string] => [Number(cells[1]), cells[2]!.slice(1, -1)]);
}

it('docs/lifecycle.md lists exactly the stages of the pipeline, in its order', async () => {
  // Every optional stage on: the ACME challenge stage, the IDS, enforce_https.
  const raw = configSchema.parse({
    server: { http_port: 80, https_port: 443, access_log: true },
    security: { enforce_https: true, ids: { enabled: true } },
    ssl: { provider: 'acme', agree_tos: true, domains: ['a.example'] },
    vhosts: [{ domains: ['a.example'], root: '/srv' }],
  });
  const { config, problems } = compile(raw, 'test', { cwd: '/', cpuCount: 1, delegatedCgroup: null });
  assert.deepEqual(problems, []);
  const log = pino({ level: 'silent' });
  const metrics = new WorkerMetrics(UNLIMITED, () => 0);
  const pipeline = createPipeline(config, log, UNLIMITED, metrics, new AcmeChallenges(log));
  try {
    const rows = documentedStages();
    const documented = rows.map(([, name]) => name).filter((name, i, names) => names.indexOf(name) === i);
    assert.deepEqual(documented, pipeline.stageNames);
    // Each stage keeps one number, and the numbers never go back.
    for (const name of documented) assert.equal(new Set(rows.filter(([, n]) => n === name).map(([number]) => number)).size, 1, name);
    const numbers = documented.map((name) => rows.find(([, n]) => n === name)![0]);
    assert.deepEqual(
      numbers,
      [...numbers].sort((a, b) => a - b),
    );
  } finally {
    await pipeline.close();
    metrics.close();
  }
});
