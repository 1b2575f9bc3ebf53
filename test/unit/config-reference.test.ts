/**
 * docs/config.md and the schema say the same thing, and every key says what
 * it does (issue 14), as errors.test.ts keeps docs/errors.md in step with
 * the error catalogue. A key added without a comment beside it in
 * src/config/schema.ts fails here; `npm run docs:config` rewrites the file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { configReference, REFERENCE_FILE, renderConfigReference } from '../../scripts/config-reference.js';
import { configSchema } from '../../src/config/schema.js';

it('every key of the schema has a description beside it', () => {
  const undocumented = configReference()
    .filter((entry) => entry.description === null || entry.description.length < 10)
    .map((entry) => entry.key);
  assert.deepEqual(undocumented, [], 'document these in src/config/schema.ts, then run npm run docs:config');
});

it('docs/config.md is what npm run docs:config writes', () => {
  assert.equal(readFileSync(REFERENCE_FILE, 'utf8'), renderConfigReference(), 'run npm run docs:config');
});

it('lists the keys the server knows, with the defaults it applies', () => {
  const keys = new Set(configReference().map((entry) => entry.key));
  for (const key of ['server.http_port', 'security.timeouts.connection_burst_per_ip', 'security.ddos.ignore_ip', 'vhosts[].root'])
    assert.ok(keys.has(key), key);
  const defaults = configSchema.parse({});
  const port = configReference().find((entry) => entry.key === 'server.http_port');
  assert.equal(port?.defaultValue, String(defaults.server.http_port));
  const headers = configReference().find((entry) => entry.key === 'security.forwarded.client_ip_headers');
  assert.equal(headers?.defaultValue, `[${defaults.security.forwarded.client_ip_headers.map((name) => JSON.stringify(name)).join(', ')}]`);
});
