/** A well-behaved HTTP/2 client for the tests: node:http2, certificates not verified. */
import http2 from 'node:http2';

export interface H2Response {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: string;
}

/**
 * A session to 127.0.0.1:`port` with SNI `servername`, once the server's
 * SETTINGS arrived (and so were acknowledged ahead of any request: nghttp2
 * applies its own settings only from the acknowledgement on).
 */
export function h2Connect(
  port: number,
  servername: string,
  options: http2.SecureClientSessionOptions = {},
): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername, rejectUnauthorized: false, ...options });
    session.once('error', reject);
    session.once('remoteSettings', () => {
      session.off('error', reject);
      // A session the server ends (GOAWAY, reset) is one of the outcomes tests look at: never an uncaught error.
      session.on('error', () => undefined);
      resolve(session);
    });
  });
}

/**
 * One request on `session`; rejects with the stream's error (its
 * `rstCode` on the stream) when the server resets it.
 */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string | Buffer,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let responseHeaders: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (received) => {
      responseHeaders = received;
      status = Number(received[':status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks).toString('utf8') }));
    stream.on('error', (error: Error) => reject(Object.assign(error, { rstCode: stream.rstCode })));
    if (body !== undefined) stream.end(body);
  });
}

/** One GET on a fresh session, closed afterwards. */
export async function h2Get(port: number, servername: string, path = '/', extra: http2.OutgoingHttpHeaders = {}): Promise<H2Response> {
  const session = await h2Connect(port, servername);
  try {
    return await h2Request(session, { ':path': path, ':authority': servername, ...extra });
  } finally {
    session.close();
  }
}
