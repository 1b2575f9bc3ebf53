/**
 * Conditional requests and byte ranges (RFC 9110 §13, §14): whether a
 * cached copy is still good (304), whether a range may be sent (If-Range),
 * which single range a Range header asks for, and HTTP-dates as the RFC
 * defines them. Pure: the validators come from the file's entry (entry.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';

/** What a representation's validators are, as the conditionals compare them. */
export interface Validators {
  /** Always weak here (entry.ts): W/"size-mtime". */
  readonly etag: string;
  readonly lastModified: string;
  /** Last-Modified in whole seconds, the resolution HTTP-date comparisons work at. */
  readonly lastModifiedSec: number;
}

/**
 * RFC 9110 §13.2.2: If-None-Match is evaluated when present, and then
 * If-Modified-Since is ignored; only GET and HEAD reach this handler, so
 * a false condition is a 304.
 */
export function isNotModified(headers: IncomingHttpHeaders, entry: Validators): boolean {
  const noneMatch = headers['if-none-match'];
  if (noneMatch !== undefined) return matchesWeakly(noneMatch, entry.etag);
  const modifiedSince = headers['if-modified-since'];
  if (modifiedSince === undefined) return false;
  if (modifiedSince === entry.lastModified) return true;
  // RFC 9110 §13.1.3: an invalid date is ignored.
  const sinceSec = parseHttpDate(modifiedSince);
  return !Number.isNaN(sinceSec) && entry.lastModifiedSec <= sinceSec;
}

/** If-None-Match list against our tag with the weak comparison (RFC 9110 §8.8.3.2). */
export function matchesWeakly(fieldValue: string, etag: string): boolean {
  if (fieldValue === etag) return true;
  // Our tags are always weak; compare opaque parts.
  const opaque = etag.slice(2);
  let at = 0;
  const length = fieldValue.length;
  while (at < length) {
    const ch = fieldValue.charCodeAt(at);
    if (ch === 0x20 || ch === 0x09 || ch === 0x2c) {
      at++;
      continue;
    }
    if (ch === 0x2a) return true; // "*": any current representation
    let tagStart = at;
    if (fieldValue.startsWith('W/', at)) tagStart = at + 2;
    if (fieldValue.charCodeAt(tagStart) !== 0x22) return false; // malformed: match nothing
    const close = fieldValue.indexOf('"', tagStart + 1);
    if (close === -1) return false;
    if (fieldValue.slice(tagStart, close + 1) === opaque) return true;
    at = close + 1;
  }
  return false;
}

/**
 * RFC 9110 §13.1.5: send the range only if the representation is still the
 * one the client has part of. An entity tag must match strongly, which our
 * weak tags never do, so it means "send it all"; a date must equal
 * Last-Modified exactly.
 */
export function ifRangeHolds(ifRange: string | string[] | undefined, entry: Validators): boolean {
  if (ifRange === undefined) return true;
  if (typeof ifRange !== 'string') return false;
  if (ifRange.startsWith('"') || ifRange.startsWith('W/')) return false;
  if (ifRange === entry.lastModified) return true;
  return parseHttpDate(ifRange) === entry.lastModifiedSec;
}

/** A Range header to ignore: the whole representation goes out with 200. */
export const IGNORE_RANGE = Symbol('ignore range');
/** A Range that selects nothing of the representation: 416. */
export const UNSATISFIABLE = Symbol('unsatisfiable');
const DIGITS = /^[0-9]{1,15}$/;

/**
 * One byte range (RFC 9110 §14.1.2): "a-b", "a-" or "-n". Several ranges
 * get the whole representation with 200, which §14.2 allows and which
 * avoids multipart/byteranges amplification. A syntactically invalid
 * header is ignored (§14.2 lets a server ignore it).
 */
export function parseByteRange(
  fieldValue: string,
  size: number,
): { start: number; end: number } | typeof IGNORE_RANGE | typeof UNSATISFIABLE {
  const eq = fieldValue.indexOf('=');
  if (eq === -1 || fieldValue.slice(0, eq).trim().toLowerCase() !== 'bytes') return IGNORE_RANGE;
  // §5.6.1: recipients accept empty list elements.
  const specs = fieldValue
    .slice(eq + 1)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length !== 1) return IGNORE_RANGE;
  const spec = specs[0] ?? '';
  const dash = spec.indexOf('-');
  if (dash === -1) return IGNORE_RANGE;
  const first = spec.slice(0, dash);
  const last = spec.slice(dash + 1);

  if (first === '') {
    if (!DIGITS.test(last)) return IGNORE_RANGE;
    const suffixLength = Number(last);
    // §14.1.3: a zero suffix, or any suffix of an empty representation,
    // selects nothing.
    if (suffixLength === 0 || size === 0) return UNSATISFIABLE;
    return { start: Math.max(0, size - suffixLength), end: size - 1 };
  }
  if (!DIGITS.test(first) || (last !== '' && !DIGITS.test(last))) return IGNORE_RANGE;
  const start = Number(first);
  const lastPos = last === '' ? size - 1 : Number(last);
  if (lastPos < start && last !== '') return IGNORE_RANGE; // §14.1.1: invalid
  if (start >= size) return UNSATISFIABLE;
  return { start, end: Math.min(lastPos, size - 1) };
}

const MONTHS: Readonly<Record<string, number>> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * An HTTP-date in seconds since the epoch, or NaN. RFC 9110 §5.6.7: accept
 * IMF-fixdate and the two obsolete forms, and nothing looser (Date.parse
 * would accept almost anything).
 */
export function parseHttpDate(value: string): number {
  let day: string | undefined;
  let month: string | undefined;
  let year: number;
  let time: (string | undefined)[];
  let match = IMF_FIXDATE.exec(value);
  if (match !== null) {
    day = match[1];
    month = match[2];
    year = Number(match[3]);
    time = [match[4], match[5], match[6]];
  } else if ((match = RFC850_DATE.exec(value)) !== null) {
    day = match[1];
    month = match[2];
    // §5.6.7: a two-digit year more than 50 years ahead is in the past century.
    const twoDigit = Number(match[3]);
    const thisYear = new Date().getUTCFullYear();
    year = Math.floor(thisYear / 100) * 100 + twoDigit;
    if (year > thisYear + 50) year -= 100;
    time = [match[4], match[5], match[6]];
  } else if ((match = ASCTIME_DATE.exec(value)) !== null) {
    month = match[1];
    day = match[2]?.trim();
    year = Number(match[6]);
    time = [match[3], match[4], match[5]];
  } else {
    return NaN;
  }
  const monthIndex = month === undefined ? undefined : MONTHS[month];
  const dayOfMonth = Number(day);
  const [hours, minutes, seconds] = time.map(Number);
  if (monthIndex === undefined || hours === undefined || minutes === undefined || seconds === undefined) return NaN;
  if (hours > 23 || minutes > 59 || seconds > 60 || dayOfMonth < 1) return NaN;
  const ms = Date.UTC(year, monthIndex, dayOfMonth, hours, minutes, seconds);
  // Date.UTC rolls "31 Feb" into March; a real date does not move.
  if (new Date(ms).getUTCDate() !== dayOfMonth && seconds !== 60) return NaN;
  return Math.floor(ms / 1000);
}
