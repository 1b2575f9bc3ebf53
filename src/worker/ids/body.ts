/**
 * Bodies by media type: urlencoded forms field by field, JSON string by
 * string (keys too), multipart text fields and file names, text and other
 * non-binary types as one text. Each is read on its first MAX_BODY_BYTES.
 */
import type { Findings } from './match.js';
import { decodePercent } from './traversal.js';
import { inspectJsonStrings, inspectParameters, inspectValue, MAX_VALUE_CHARS } from './values.js';

/** Bytes of a body inspected, whatever prefix the caller hands over. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Media types whose bodies are binary: inspecting them as text finds only noise. */
export const BINARY_MEDIA =
  /^(?:image|audio|video|font|model)\/|^application\/(?:octet-stream|zip|gzip|x-gzip|x-tar|x-7z-compressed|pdf|wasm|grpc|x-protobuf|protobuf|vnd\.|msword|ogg|x-bzip2|zstd)/;

/** multipart/form-data: text fields as values, file names as values, file contents only when textual. */
function inspectMultipart(text: string, contentType: string, found: Findings): void {
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  const boundary = match === null ? undefined : (match[1] ?? match[2]);
  if (boundary === undefined) {
    inspectText(text, found);
    return;
  }
  const parts = text.split(`--${boundary}`);
  for (let p = 1; p < parts.length; p++) {
    const part = parts[p]!;
    if (part.startsWith('--')) break;
    let headerEnd = part.indexOf('\r\n\r\n');
    let bodyStart = headerEnd + 4;
    if (headerEnd === -1) {
      headerEnd = part.indexOf('\n\n');
      bodyStart = headerEnd + 2;
    }
    if (headerEnd === -1) continue;
    const headers = part.slice(0, headerEnd);
    let content = part.slice(bodyStart);
    if (content.endsWith('\r\n')) content = content.slice(0, -2);
    const filename = /\bfilename="([^"]*)"|\bfilename=([^;\r\n]*)/i.exec(headers);
    if (filename !== null) {
      inspectValue(filename[1] ?? filename[2] ?? '', 'body', 'value', found);
      const partType = /^content-type:\s*([^\s;]+)/im.exec(headers)?.[1]?.toLowerCase() ?? 'application/octet-stream';
      if (!partType.startsWith('text/') || content.indexOf('\0') !== -1) continue;
      inspectText(content, found);
    } else {
      inspectValue(content, 'body', 'value', found);
    }
  }
}

/** A whole text, in MAX_VALUE_CHARS windows that overlap so an attack on a window edge is seen whole. */
function inspectText(text: string, found: Findings): void {
  const overlap = 512;
  for (let from = 0; from < text.length; from += MAX_VALUE_CHARS - overlap) {
    inspectValue(text.slice(from, from + MAX_VALUE_CHARS), 'body', 'text', found);
    if (from + MAX_VALUE_CHARS >= text.length) break;
  }
}

/** JSON's string escapes ("\u003c", "\"", "\n") undone across a whole text, as a parser would undo them in each literal. */
function unescapeJson(text: string): string {
  return text.replace(/\\(?:u([0-9a-fA-F]{4})|([\s\S]))/g, (_whole, hex?: string, other?: string) => {
    if (hex !== undefined) return String.fromCharCode(parseInt(hex, 16));
    switch (other) {
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      default:
        return other ?? '';
    }
  });
}

/**
 * Runs the built-in detectors over a body and, when `forRules` (the engine
 * has custom rules), returns the texts custom rules are matched against:
 * the body in every decoding the detectors see (a form percent-decoded with
 * "+" as space, as the query is; JSON as sent and with its string escapes
 * undone; other text as sent). Binary media types are not read and return none.
 */
export function inspectBodyText(body: Buffer, contentType: string | undefined, found: Findings, forRules: boolean): string[] {
  if (body.length === 0) return [];
  const mediaType = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (BINARY_MEDIA.test(mediaType)) return [];
  const text = body.subarray(0, MAX_BODY_BYTES).toString('utf8');
  if (mediaType === 'application/x-www-form-urlencoded') {
    inspectParameters(text, 'body', found);
    return forRules ? [decodePercent(text, true)] : [];
  }
  if (mediaType.endsWith('json')) {
    inspectJsonStrings(text, found);
    if (!forRules) return [];
    return text.indexOf('\\') === -1 ? [text] : [text, unescapeJson(text)];
  }
  if (mediaType === 'multipart/form-data') {
    inspectMultipart(text, contentType ?? '', found);
    return [text];
  }
  if (text.slice(0, 1024).indexOf('\0') !== -1) return [];
  inspectText(text, found);
  return [text];
}
