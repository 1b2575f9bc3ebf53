/**
 * Before a server is measured it must serve the right bytes: a fast 404 is
 * not a result. One request over the scenario's own transport (HTTP/1.1,
 * HTTPS, or HTTP/2 with the benchmark certificate verified), compared with
 * the file on disk. Asked with an Accept-Encoding, the answer must come
 * compressed and decode to the file; asked without, it must come as stored.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import type { Transport } from './catalogue.js';
import type { Tracked } from './procs.js';
import type { BenchCertificate } from './tls.js';

const START_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 10_000;

/** Where a check or a load goes: a port, over TLS (verifying the benchmark certificate) or not, and with which protocol. */
export interface Endpoint {
  readonly port: number;
  readonly transport: Transport;
  readonly tls: BenchCertificate | null;
}

/** What a body must be: its length and SHA-256 (the 100 MB file is not kept in memory twice). */
export interface ExpectedBody {
  readonly bytes: number;
  readonly sha256: string;
  /** The media type it must be served as; null: any (Caddy sends none for a name Go's table does not know). */
  readonly contentType: string | null;
}

export function expectedBody(body: Buffer, contentType: string | null): ExpectedBody {
  return { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), contentType };
}

interface Fetched {
  readonly status: number;
  readonly contentType: string | undefined;
  /** The Content-Encoding the answer came with, if any; bytes and sha256 are of the decoded body. */
  readonly contentEncoding: string | undefined;
  /** The body's bytes as they came over the connection (encoded, if it was). */
  readonly wireBytes: number;
  readonly bytes: number;
  readonly sha256: string;
}

/** What a checked answer was: the coding the server chose (null: as stored) and the body's size on the wire. */
export interface Served {
  readonly coding: string | null;
  readonly wireBytes: number;
}

/** The decoder for a Content-Encoding a browser offers; null for one the check cannot read. */
function decoder(coding: string): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | zlib.ZstdDecompress | null {
  switch (coding.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return zlib.createZstdDecompress();
    default:
      return null;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** One GET over HTTP/1.1 (plain or TLS), decoding the body if it came encoded. Over TLS the certificate must verify for `host`. */
function fetchHttp1(endpoint: Endpoint, host: string, urlPath: string, acceptEncoding: string | null): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const headers = acceptEncoding === null ? { host } : { host, 'accept-encoding': acceptEncoding };
    const options = { host: '127.0.0.1', port: endpoint.port, path: urlPath, headers, agent: false, timeout: REQUEST_TIMEOUT_MS };
    const get = endpoint.tls === null ? http.get : https.get;
    const tlsOptions = endpoint.tls === null ? {} : { ca: endpoint.tls.certPem, servername: host };
    const request = get({ ...options, ...tlsOptions }, (response) => {
      const contentEncoding = response.headers['content-encoding'];
      const identity = contentEncoding === undefined || contentEncoding.trim().toLowerCase() === 'identity';
      const decode = identity ? null : decoder(contentEncoding);
      if (!identity && decode === null) {
        response.resume();
        reject(new Error(`answered Content-Encoding "${contentEncoding}", which the check cannot decode`));
        return;
      }
      const hash = createHash('sha256');
      let wireBytes = 0;
      let bytes = 0;
      response.on('data', (chunk: Buffer) => (wireBytes += chunk.length));
      const body: Readable = decode === null ? response : response.pipe(decode);
      body.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      body.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: response.headers['content-type'],
          contentEncoding: identity ? undefined : contentEncoding,
          wireBytes,
          bytes,
          sha256: hash.digest('hex'),
        }),
      );
      response.on('error', reject);
      if (decode !== null) decode.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

/** One GET over HTTP/2 (ALPN h2 only: a server that falls back to HTTP/1.1 fails the check). */
function fetchHttp2(endpoint: Endpoint, host: string, urlPath: string): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    if (endpoint.tls === null) {
      reject(new Error('HTTP/2 is measured over TLS only'));
      return;
    }
    const session = http2.connect(`https://${host}:${endpoint.port}`, {
      host: '127.0.0.1',
      servername: host,
      ca: endpoint.tls.certPem,
      ALPNProtocols: ['h2'],
    });
    const timer = setTimeout(() => session.destroy(new Error('timed out')), REQUEST_TIMEOUT_MS);
    session.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    const stream = session.request({ ':path': urlPath, ':authority': host });
    const hash = createHash('sha256');
    let bytes = 0;
    let status = 0;
    let contentType: string | undefined;
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      contentType = headers['content-type'] as string | undefined;
    });
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    stream.on('end', () => {
      clearTimeout(timer);
      session.close();
      resolve({ status, contentType, contentEncoding: undefined, wireBytes: bytes, bytes, sha256: hash.digest('hex') });
    });
    stream.on('error', (error) => {
      clearTimeout(timer);
      session.destroy();
      reject(error);
    });
  });
}

/**
 * How `endpoint` serves `expected` at `urlPath` for `host`, or why it does
 * not. With `acceptEncoding` the answer must be compressed (any coding the
 * header offers) and decode to the file; without, it must be the file as stored.
 */
export async function inspectServes(
  endpoint: Endpoint,
  host: string,
  urlPath: string,
  expected: ExpectedBody,
  acceptEncoding: string | null = null,
): Promise<Served | string> {
  const asked = acceptEncoding === null ? '' : `, Accept-Encoding: ${acceptEncoding}`;
  const what = `${endpoint.transport === 'http' ? '' : `${endpoint.transport.toUpperCase()} `}GET ${urlPath} (Host: ${host}${asked})`;
  try {
    if (endpoint.transport === 'h2' && acceptEncoding !== null) return `${what}: compression is checked over HTTP/1.1 only`;
    const got =
      endpoint.transport === 'h2' ? await fetchHttp2(endpoint, host, urlPath) : await fetchHttp1(endpoint, host, urlPath, acceptEncoding);
    if (got.status !== 200) return `${what} answered ${got.status}`;
    if (got.bytes !== expected.bytes || got.sha256 !== expected.sha256)
      return `${what} answered ${got.bytes} bytes${got.contentEncoding === undefined ? '' : ` (decoded from ${got.contentEncoding})`} that differ from the file (${expected.bytes} bytes)`;
    if (expected.contentType !== null && !(got.contentType ?? '').startsWith(expected.contentType))
      return `${what}: Content-Type is "${got.contentType}", expected ${expected.contentType}`;
    if (acceptEncoding === null && got.contentEncoding !== undefined)
      return `${what} answered Content-Encoding "${got.contentEncoding}" without being offered one`;
    if (acceptEncoding !== null && got.contentEncoding === undefined) return `${what} answered uncompressed`;
    return { coding: got.contentEncoding ?? null, wireBytes: got.wireBytes };
  } catch (error) {
    return `${what} failed: ${(error as Error).message}`;
  }
}

/** Why `endpoint` does not serve `expected` as stored at `urlPath` for `host`, or null when it does. */
export async function checkServes(endpoint: Endpoint, host: string, urlPath: string, expected: ExpectedBody): Promise<string | null> {
  const served = await inspectServes(endpoint, host, urlPath, expected);
  return typeof served === 'string' ? served : null;
}

/** Waits until `entry` serves `expected`; throws with the reason (and the tail of its log) when it does not in time. */
export async function waitUntilServes(
  entry: Tracked,
  endpoint: Endpoint,
  host: string,
  urlPath: string,
  expected: ExpectedBody,
  tailOfLog: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let why: string | null = 'not started';
  while (Date.now() < deadline) {
    if (entry.exited) break;
    why = await checkServes(endpoint, host, urlPath, expected);
    if (why === null) return;
    await sleep(100);
  }
  const exited = entry.exited
    ? `exited (code ${entry.child.exitCode ?? entry.child.signalCode})`
    : `not serving after ${START_TIMEOUT_MS / 1000} s`;
  const log = tailOfLog();
  throw new Error(`${entry.name} ${exited}: ${why}${log === '' ? '' : `\n${log}`}`);
}
