/** Which catalogue answer a parse error of Node's HTTP/1 parser gets (src/worker/connection/parse-error.ts). */
import assert from 'node:assert/strict';
import http from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
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

/**
 * The header-limits stage does not scan HTTP/1 field values for control
 * characters: Node's parser refuses them first (RFC 9110 §5.5). This pins
 * that, byte by byte, with the parser options the worker runs it with
 * (server.ts: never insecureHTTPParser), so that a parser grown lenient
 * fails here instead of letting such a value through.
 */
it('Node HTTP/1 parser refuses every control character but HTAB in a field value, and nothing else', async () => {
  const served: number[] = [];
  const refused = new Map<number, string>();
  const server = http.createServer({ insecureHTTPParser: false, requireHostHeader: false, joinDuplicateHeaders: false }, (req, res) => {
    served.push(Number(req.headers['x-byte']));
    res.end();
  });
  let current = -1;
  server.on('clientError', (error: ParseError, socket: Socket) => {
    refused.set(current, error.code ?? '');
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    for (let byte = 0; byte < 256; byte++) {
      current = byte;
      await new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.end(
            Buffer.concat([
              Buffer.from(`GET / HTTP/1.1\r\nHost: a\r\nX-Byte: ${byte}\r\nX-Value: a`, 'latin1'),
              Buffer.from([byte]),
              Buffer.from('b\r\nConnection: close\r\n\r\n', 'latin1'),
            ]),
          );
        });
        socket.on('error', () => {});
        socket.on('close', () => resolve());
        socket.resume();
      });
    }
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  const control = (byte: number): boolean => (byte < 0x20 && byte !== 0x09) || byte === 0x7f;
  for (let byte = 0; byte < 256; byte++) {
    if (control(byte)) {
      assert.ok(refused.has(byte), `byte 0x${byte.toString(16)} was not refused`);
      assert.equal(parseErrorCode(Object.assign(new Error(), { code: refused.get(byte) }), MAX_HEADER_BYTES), 'MALFORMED_REQUEST');
    } else {
      assert.ok(served.includes(byte), `byte 0x${byte.toString(16)} was refused (${refused.get(byte)})`);
    }
  }
});
