/** Which catalogue answer a parse error of Node's HTTP/1 parser gets (src/worker/connection/parse-error.ts). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseErrorCode, type ParseError } from '../../src/worker/connection/parse-error.js';

const MAX_HEADER_BYTES = 64;

const error = (code: string, rawPacket?: string): ParseError =>
  Object.assign(new Error(code), { code, ...(rawPacket !== undefined && { rawPacket: Buffer.from(rawPacket, 'latin1') }) });

const cases: readonly [string, ParseError, string | null][] = [
  ['a request line alone past the head limit', error('HPE_HEADER_OVERFLOW', `GET /${'a'.repeat(100)}`), 'URL_TOO_LONG'],
  ['a line break past the head limit', error('HPE_HEADER_OVERFLOW', `GET /${'a'.repeat(80)} HTTP/1.1\r\n`), 'URL_TOO_LONG'],
  [
    'a complete head within the limit (too many headers)',
    error('HPE_HEADER_OVERFLOW', 'GET / HTTP/1.1\r\nA: b\r\n\r\n'),
    'TOO_MANY_HEADERS',
  ],
  ['header bytes past the limit', error('HPE_HEADER_OVERFLOW', `GET / HTTP/1.1\r\nA: ${'b'.repeat(100)}`), 'HEADERS_TOO_LARGE'],
  ['an overflow without its bytes', error('HPE_HEADER_OVERFLOW'), 'HEADERS_TOO_LARGE'],
  ['an unparseable version', error('HPE_INVALID_VERSION'), 'VERSION_NOT_SUPPORTED'],
  ['headersTimeout or requestTimeout', error('ERR_HTTP_REQUEST_TIMEOUT'), 'REQUEST_TIMEOUT'],
  ['any other parser error', error('HPE_INVALID_HEADER_TOKEN'), 'MALFORMED_REQUEST'],
  ['a client that reset', error('ECONNRESET'), null],
  ['a client that stopped reading', error('EPIPE'), null],
];

for (const [what, parseError, code] of cases) {
  it(`${what}: ${code ?? 'no answer'}`, () => assert.equal(parseErrorCode(parseError, MAX_HEADER_BYTES), code));
}
