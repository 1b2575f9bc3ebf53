/**
 * Conditional requests and byte ranges of the static handler
 * (src/worker/handlers/static/conditional.ts; RFC 9110 §13, §14), as tables.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  IGNORE_RANGE,
  ifRangeHolds,
  isNotModified,
  matchesWeakly,
  parseByteRange,
  parseHttpDate,
  UNSATISFIABLE,
  type Validators,
} from '../../src/worker/handlers/static/conditional.js';

const MODIFIED_SEC = Date.UTC(2024, 0, 15, 12, 30, 45) / 1000;
const ENTRY: Validators = {
  etag: 'W/"b-18d0a0b0c80"',
  lastModified: new Date(MODIFIED_SEC * 1000).toUTCString(),
  lastModifiedSec: MODIFIED_SEC,
};

describe('parseHttpDate', () => {
  const cases: readonly [string, number][] = [
    ['Mon, 15 Jan 2024 12:30:45 GMT', MODIFIED_SEC],
    ['Monday, 15-Jan-24 12:30:45 GMT', MODIFIED_SEC],
    ['Mon Jan 15 12:30:45 2024', MODIFIED_SEC],
    ['Mon Jan  5 12:30:45 2024', Date.UTC(2024, 0, 5, 12, 30, 45) / 1000],
  ];
  for (const [text, seconds] of cases) it(`reads ${JSON.stringify(text)}`, () => assert.equal(parseHttpDate(text), seconds));

  const invalid = [
    '',
    '2024-01-15T12:30:45Z',
    'Mon, 15 Jan 2024 12:30:45 UTC',
    'Mon, 15 Jan 2024 12:30:45 GMT ',
    'mon, 15 Jan 2024 12:30:45 GMT',
    'Mon, 31 Feb 2024 12:30:45 GMT',
    'Mon, 15 Foo 2024 12:30:45 GMT',
    'Mon, 15 Jan 2024 24:00:00 GMT',
    'Mon, 00 Jan 2024 12:30:45 GMT',
    '1705321845',
  ];
  for (const text of invalid) it(`refuses ${JSON.stringify(text)}`, () => assert.ok(Number.isNaN(parseHttpDate(text))));

  it('puts a two-digit year more than 50 years ahead in the past century (§5.6.7)', () => {
    const twoDigit = (new Date().getUTCFullYear() + 60) % 100;
    const year = new Date(parseHttpDate(`Sunday, 01-Jan-${String(twoDigit).padStart(2, '0')} 00:00:00 GMT`) * 1000).getUTCFullYear();
    assert.ok(year <= new Date().getUTCFullYear() + 50 && year % 100 === twoDigit, String(year));
  });
});

describe('matchesWeakly (If-None-Match)', () => {
  const cases: readonly [string, boolean][] = [
    ['W/"b-18d0a0b0c80"', true],
    ['"b-18d0a0b0c80"', true],
    ['"other", W/"b-18d0a0b0c80"', true],
    [' ,"other",\t"b-18d0a0b0c80"', true],
    ['*', true],
    ['"other"', false],
    ['W/"other"', false],
    ['b-18d0a0b0c80', false],
    ['"b-18d0a0b0c80', false],
    ['', false],
  ];
  for (const [field, match] of cases) {
    it(`${JSON.stringify(field)}: ${match ? 'matches' : 'does not match'}`, () => assert.equal(matchesWeakly(field, ENTRY.etag), match));
  }
});

describe('isNotModified', () => {
  const cases: readonly [string, Record<string, string>, boolean][] = [
    ['no condition', {}, false],
    ['the same tag', { 'if-none-match': ENTRY.etag }, true],
    [
      'another tag, even with a matching date (If-None-Match wins, §13.2.2)',
      { 'if-none-match': '"x"', 'if-modified-since': ENTRY.lastModified },
      false,
    ],
    ['Last-Modified itself', { 'if-modified-since': ENTRY.lastModified }, true],
    ['a later date', { 'if-modified-since': 'Tue, 16 Jan 2024 00:00:00 GMT' }, true],
    ['an earlier date', { 'if-modified-since': 'Sun, 14 Jan 2024 00:00:00 GMT' }, false],
    ['an invalid date (ignored, §13.1.3)', { 'if-modified-since': 'yesterday' }, false],
  ];
  for (const [what, headers, notModified] of cases) {
    it(`${what}: ${notModified ? '304' : 'the representation'}`, () => assert.equal(isNotModified(headers, ENTRY), notModified));
  }
});

describe('ifRangeHolds', () => {
  const cases: readonly [string | string[] | undefined, boolean][] = [
    [undefined, true],
    [ENTRY.lastModified, true],
    ['Monday, 15-Jan-24 12:30:45 GMT', true],
    ['Mon, 15 Jan 2024 12:30:46 GMT', false],
    // Our tags are weak, and If-Range compares strongly (§13.1.5): never a match.
    [ENTRY.etag, false],
    ['"b-18d0a0b0c80"', false],
    [[ENTRY.lastModified, ENTRY.lastModified], false],
    ['garbage', false],
  ];
  for (const [field, holds] of cases) {
    it(`${JSON.stringify(field)}: ${holds ? 'the range' : 'the whole'}`, () => assert.equal(ifRangeHolds(field, ENTRY), holds));
  }
});

describe('parseByteRange', () => {
  const SIZE = 100;
  const cases: readonly [string, number, { start: number; end: number } | typeof IGNORE_RANGE | typeof UNSATISFIABLE][] = [
    ['bytes=0-9', SIZE, { start: 0, end: 9 }],
    ['bytes=90-', SIZE, { start: 90, end: 99 }],
    ['bytes=-10', SIZE, { start: 90, end: 99 }],
    ['bytes=-1000', SIZE, { start: 0, end: 99 }],
    ['bytes=50-1000', SIZE, { start: 50, end: 99 }],
    ['BYTES = 0-0', SIZE, { start: 0, end: 0 }],
    ['bytes=, 5-6 ,', SIZE, { start: 5, end: 6 }],
    ['bytes=100-', SIZE, UNSATISFIABLE],
    ['bytes=100-200', SIZE, UNSATISFIABLE],
    ['bytes=-0', SIZE, UNSATISFIABLE],
    ['bytes=-5', 0, UNSATISFIABLE],
    ['bytes=0-', 0, UNSATISFIABLE],
    ['bytes=0-1,5-6', SIZE, IGNORE_RANGE],
    ['bytes=9-0', SIZE, IGNORE_RANGE],
    ['bytes=a-b', SIZE, IGNORE_RANGE],
    ['bytes=+1-2', SIZE, IGNORE_RANGE],
    ['bytes=1', SIZE, IGNORE_RANGE],
    ['bytes=', SIZE, IGNORE_RANGE],
    ['items=0-9', SIZE, IGNORE_RANGE],
    ['0-9', SIZE, IGNORE_RANGE],
    ['bytes=1234567890123456-', SIZE, IGNORE_RANGE],
  ];
  for (const [field, size, expected] of cases) {
    it(`${JSON.stringify(field)} of ${size} bytes`, () => assert.deepEqual(parseByteRange(field, size), expected));
  }
});
