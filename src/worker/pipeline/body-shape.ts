/**
 * Streaming checks of what a body contains, for the formats whose parsers
 * upstream are the usual denial-of-service targets: nesting depth of JSON
 * (max_json_depth), the number of urlencoded fields and multipart parts
 * (max_form_fields). They see each chunk once as it passes (body-limits.ts
 * feeds them) and keep a few counters, never the body.
 */
import type { ErrorCode } from '../errors.js';

export interface BodyInspector {
  /** Returns the rejection for this chunk, or null to let it pass. */
  feed(chunk: Buffer): { code: ErrorCode; detail: string } | null;
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const AMPERSAND = 0x26;

/** Depth of nested objects and arrays, skipping strings (RFC 8259 §7: escapes start with a backslash). */
export function jsonDepthInspector(maxDepth: number): BodyInspector {
  let depth = 0;
  let inString = false;
  let escaped = false;
  return {
    feed(chunk) {
      for (let i = 0; i < chunk.length; i++) {
        const byte = chunk[i]!;
        if (inString) {
          if (escaped) escaped = false;
          else if (byte === BACKSLASH) escaped = true;
          else if (byte === QUOTE) inString = false;
        } else if (byte === QUOTE) {
          inString = true;
        } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
          depth += 1;
          if (depth > maxDepth) return { code: 'JSON_TOO_DEEP', detail: `nesting deeper than ${maxDepth}` };
        } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
          depth -= 1;
        }
      }
      return null;
    },
  };
}

/** application/x-www-form-urlencoded: fields are separated by "&". */
export function formFieldsInspector(maxFields: number): BodyInspector {
  let fields = 1;
  return {
    feed(chunk) {
      for (let i = chunk.indexOf(AMPERSAND); i !== -1; i = chunk.indexOf(AMPERSAND, i + 1)) {
        fields += 1;
        if (fields > maxFields) return { code: 'TOO_MANY_FORM_FIELDS', detail: `more than ${maxFields} fields` };
      }
      return null;
    },
  };
}

/**
 * multipart/form-data: parts are introduced by "--boundary" (RFC 7578,
 * RFC 2046 §5.1.1). The delimiter is searched across chunk edges by keeping
 * the last delimiter-length-minus-one bytes of the previous chunk.
 */
export function multipartPartsInspector(boundary: string, maxParts: number): BodyInspector {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1');
  let carry = Buffer.alloc(0);
  let delimiters = 0;
  return {
    feed(chunk) {
      const window = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
      for (let i = window.indexOf(delimiter); i !== -1; i = window.indexOf(delimiter, i + delimiter.length)) {
        delimiters += 1;
        // n parts have n + 1 delimiters (the last one closes the body).
        if (delimiters - 1 > maxParts) return { code: 'TOO_MANY_FORM_FIELDS', detail: `more than ${maxParts} parts` };
      }
      carry = Buffer.from(window.subarray(Math.max(0, window.length - (delimiter.length - 1))));
      return null;
    },
  };
}

/** The boundary parameter of a multipart Content-Type (RFC 2046 §5.1.1: 1-70 characters). */
export function multipartBoundary(contentType: string): string | null {
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))\s*(?:;|$)/i.exec(contentType);
  return match ? (match[1] ?? match[2] ?? null) : null;
}
