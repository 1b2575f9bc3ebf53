/**
 * Which content coding a response gets: the client's Accept-Encoding
 * (RFC 9110 §12.5.3) first, by its q-values, then the server's preference
 * (`algorithms`) among codings the client weighs alike. "identity" is always
 * acceptable to send (§12.5.3 lets a server ignore "identity;q=0"), so a
 * header that cannot be read means no coding, never a refusal.
 *
 * Accept-Encoding is attacker-chosen: the header is read at most
 * MAX_HEADER_CHARS deep and MAX_ELEMENTS elements long, and answers are
 * remembered per header value in a bounded table (browsers send a handful
 * of distinct values).
 */
import type { ContentCoding } from '../../config/types.js';

const MAX_HEADER_CHARS = 1024;
const MAX_ELEMENTS = 32;
const CACHE_LIMIT = 256;

/** q-value per coding the header names (lower-case), and the weight of "*". */
interface Weights {
  readonly named: ReadonlyMap<string, number>;
  readonly any: number | null;
}

/** RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ). */
const QVALUE = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/;

export function parseAcceptEncoding(header: string): Weights {
  const named = new Map<string, number>();
  let any: number | null = null;
  const elements = header.slice(0, MAX_HEADER_CHARS).split(',', MAX_ELEMENTS);
  for (const element of elements) {
    const [codingPart, ...params] = element.split(';');
    const coding = (codingPart ?? '').trim().toLowerCase();
    if (coding === '') continue;
    let q = 1;
    for (const param of params) {
      const [name, value] = param.split('=', 2).map((part) => part.trim());
      if (name?.toLowerCase() !== 'q') continue;
      // An unreadable weight makes the element meaningless: skip it rather than guess.
      q = value !== undefined && QVALUE.test(value) ? Number(value) : Number.NaN;
    }
    if (Number.isNaN(q)) continue;
    // "x-gzip" is gzip (RFC 9110 §8.4.1.3).
    const name = coding === 'x-gzip' ? 'gzip' : coding;
    if (name === '*') any = q;
    else if (!named.has(name)) named.set(name, q);
  }
  return { named, any };
}

const chosen = new Map<string, ContentCoding | null>();

/**
 * The coding to apply among `available` (server preference order), or null
 * for none. Remembered per list and header value.
 */
export function chooseCoding(header: string | undefined, available: readonly ContentCoding[]): ContentCoding | null {
  if (header === undefined || header === '' || available.length === 0) return null;
  const key = `${available.join(',')}\n${header}`;
  const cached = chosen.get(key);
  if (cached !== undefined) return cached;
  const weights = parseAcceptEncoding(header);
  let best: ContentCoding | null = null;
  let bestQ = 0;
  for (const coding of available) {
    const q = weights.named.get(coding) ?? weights.any ?? 0;
    // Strictly greater: on a tie the server's earlier preference stays.
    if (q > bestQ) {
      best = coding;
      bestQ = q;
    }
  }
  if (chosen.size >= CACHE_LIMIT) chosen.clear();
  chosen.set(key, best);
  return best;
}
