/**
 * The README's promises that CI and a reader rely on: its second command
 * is exactly what .ci/run runs, and nothing in the repository sends a
 * reader to a document that is not in it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

it("the README's test command is .ci/run's, byte for byte", () => {
  const ci = readFileSync(path.join(ROOT, '.ci/run'), 'utf8').split('\n');
  const commands = ci.filter((line) => line.startsWith('apt-get '));
  assert.equal(commands.length, 1, '.ci/run runs one command line');
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
  const heading = readme.indexOf('# 2. set up and run the whole test suite');
  assert.notEqual(heading, -1, "the README's second command has its comment");
  assert.equal(readme[heading + 1], commands[0]);
});

it("the README's first command sets up and starts the server on its built-in default", () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
  const heading = readme.findIndex((line) => line.startsWith('# 1. set up and start the server on its built-in default'));
  assert.notEqual(heading, -1);
  assert.match(readme[heading + 1]!, /^apt-get update && apt-get install -y .*&& npm ci && bin\/miwidothttp start$/);
});

/** Names of documents that live outside the repository (spelled apart so this file does not match itself). */
const OUTSIDE = new RegExp(
  ['STYLE\\.md', 'contract\\.md', ['shared', 'spec'].join('/'), '\\.\\./shared', ['security', 'architecture'].join('-')].join('|'),
);
const SEARCHED = ['src', 'docs', 'bin', 'native-helpers', 'config', 'scripts', 'test', 'bench', 'systemd', 'share', '.ci'];
const SKIPPED = new Set(['build', 'node_modules', 'dist']);

function* files(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIPPED.has(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else if (entry.isFile() && !/\.(png|so|o)$/.test(entry.name)) yield full;
  }
}

it('nothing refers to a document outside the repository', () => {
  const found: string[] = [];
  for (const file of [path.join(ROOT, 'README.md'), ...SEARCHED.flatMap((dir) => [...files(path.join(ROOT, dir))])]) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, index) => {
      if (OUTSIDE.test(line)) found.push(`${path.relative(ROOT, file)}:${index + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, []);
});
