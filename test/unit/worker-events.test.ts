/**
 * The worker's closed vocabulary (src/ipc/worker-events.ts) covers every
 * name the worker's code can send: the master kills a worker for any other,
 * so a name added to the worker and not to the list would kill honest
 * workers. Read from the worker's source, wherever its files move.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_IDS_RULES, WORKER_AUDIT_EVENTS, WORKER_REJECTION_REASONS } from '../../src/ipc/worker-events.js';
import { ERRORS } from '../../src/worker/errors.js';
import { ROOT } from '../support/harness.js';

/** Names the worker only logs (its own log line), never sends; access-log notes (`ctx.note(...)`) are skipped by the scan. */
const LOG_ONLY = new Set([
  'tls.certificate_unusable',
  'acme.bad_challenge',
  'acme.stale_challenges',
  'upstream.healthy',
  'upstream.unhealthy',
]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') ? [readFileSync(file, 'utf8')] : [];
  });
}

const workerSource = sources(path.join(ROOT, 'src/worker')).join('\n');

describe("the worker's vocabulary", () => {
  it('holds every event of the error catalogue', () => {
    for (const spec of Object.values(ERRORS)) assert.ok(WORKER_AUDIT_EVENTS.has(spec.event), spec.event);
  });

  it('holds every event name written as a literal in the worker', () => {
    const literals = new Set([
      ...[
        ...workerSource.matchAll(/(?<!note\()'((?:request|connection|proxy_protocol|response|upstream|server|ids|tls|auth)\.[a-z_]+)'/g),
      ].map((match) => match[1]!),
      // Whatever its prefix, an `event:` field is an event.
      ...[...workerSource.matchAll(/event: '([a-z_]+\.[a-z_.]+)'/g)].map((match) => match[1]!),
    ]);
    assert.ok(literals.size > 10, `found ${literals.size}`);
    for (const name of literals) {
      if (LOG_ONLY.has(name)) continue;
      assert.ok(WORKER_AUDIT_EVENTS.has(name) || WORKER_REJECTION_REASONS.has(name), `${name} is not in src/ipc/worker-events.ts`);
    }
  });

  it('holds every PROXY protocol refusal (proxy_protocol.<reason>)', () => {
    const union = /reason: ((?:'[a-z_]+'(?: \| )?)+); detail: string/.exec(workerSource);
    assert.ok(union !== null, 'the PROXY protocol reader names its refusals');
    for (const [, reason] of union[1]!.matchAll(/'([a-z_]+)'/g)) assert.ok(WORKER_AUDIT_EVENTS.has(`proxy_protocol.${reason}`), reason);
  });

  it("names the IDS's built-in rules", () => {
    const builtins = [...workerSource.matchAll(/: BuiltinRule = \{ name: '([^']+)'/g)].map((match) => match[1]!);
    assert.deepEqual([...builtins].sort(), [...BUILTIN_IDS_RULES].sort());
  });
});
