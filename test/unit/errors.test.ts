/** The error catalogue and docs/errors.md say the same thing. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { ERRORS, rawErrorResponse } from '../../src/worker/errors.js';
import { ROOT } from '../support/harness.js';

it('docs/errors.md lists exactly the catalogue', () => {
  const rows = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8')
    .split('\n')
    .filter((line) => /^\| [A-Z_]+ \|/.test(line))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
  const documented = Object.fromEntries(
    rows.map(([code, status, event, text, close]) => [code, { status: Number(status), event, text, close: close === 'yes' }]),
  );
  assert.deepEqual(documented, ERRORS);
});

it('every event name is unique', () => {
  const events = Object.values(ERRORS).map((spec) => spec.event);
  assert.equal(new Set(events).size, events.length);
});

it('a raw error answer closes the connection and carries the given headers', () => {
  const bytes = rawErrorResponse('HEADERS_TOO_LARGE', [['X-Frame-Options', 'DENY']]);
  assert.match(bytes, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(bytes, /\r\nConnection: close\r\n/);
  assert.match(bytes, /\r\nX-Frame-Options: DENY\r\n/);
  const [head, body] = bytes.split('\r\n\r\n');
  assert.equal(Number(/Content-Length: (\d+)/.exec(head!)![1]), Buffer.byteLength(body!));
});
