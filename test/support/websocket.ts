/**
 * A minimal RFC 6455 endpoint pair for the tests: an echo upstream and a
 * client over HTTP/1.1 or HTTP/2 (RFC 8441), written here rather than taken
 * from the `ws` package because the tests need what a well-behaved library
 * will not do: unmasked client frames, a frame header announcing a gigabyte,
 * a wrong Sec-WebSocket-Accept from the upstream, an upstream that stops
 * reading; and `ws` has no RFC 8441 client.
 */
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const accept = (key: string): string =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;

export interface Frame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly masked: boolean;
  readonly payload: Buffer;
}

/** One frame's bytes; `masked` as a client must send them. */
export function encodeFrame(opcode: number, payload: Buffer | string, masked: boolean, fin = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const length = data.length;
  const head: number[] = [(fin ? 0x80 : 0) | opcode];
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) head.push(maskBit | length);
  else if (length < 65536) head.push(maskBit | 126, length >> 8, length & 0xff);
  else {
    head.push(maskBit | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(length));
    head.push(...big);
  }
  if (!masked) return Buffer.concat([Buffer.from(head), data]);
  const mask = randomBytes(4);
  const out = Buffer.from(data);
  for (let i = 0; i < out.length; i++) out[i] = out[i]! ^ mask[i % 4]!;
  return Buffer.concat([Buffer.from(head), mask, out]);
}

/** The close code of a close frame's payload, or null. */
export const closeCode = (frame: Frame): number | null => (frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : null);

/** Frames out of a byte stream, unmasking as needed. */
export class FrameReader {
  #buffer = Buffer.alloc(0);
  readonly frames: Frame[] = [];
  #waiters: ((frame: Frame) => void)[] = [];

  push(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const frame = this.#take();
      if (frame === null) return;
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) waiter(frame);
      else this.frames.push(frame);
    }
  }

  next(timeoutMs = 10_000): Promise<Frame> {
    const ready = this.frames.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no frame in time')), timeoutMs);
      this.#waiters.push((frame) => {
        clearTimeout(timer);
        resolve(frame);
      });
    });
  }

  #take(): Frame | null {
    const b = this.#buffer;
    if (b.length < 2) return null;
    const masked = (b[1]! & 0x80) !== 0;
    let length = b[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return null;
      length = b.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (b.length < 10) return null;
      length = Number(b.readBigUInt64BE(2));
      offset = 10;
    }
    const mask = masked ? b.subarray(offset, offset + 4) : null;
    if (masked) offset += 4;
    if (b.length < offset + length) return null;
    const payload = Buffer.from(b.subarray(offset, offset + length));
    if (mask !== null) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
    this.#buffer = b.subarray(offset + length);
    return { fin: (b[0]! & 0x80) !== 0, opcode: b[0]! & 0x0f, masked, payload };
  }
}

/** What the echo upstream saw of one connection. */
export interface UpstreamConnection {
  readonly request: IncomingMessage;
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly closed: Promise<void>;
}

export interface EchoUpstreamOptions {
  /** Answer the handshake with this instead of a correct 101 (raw bytes of a whole response). */
  readonly answer?: (req: IncomingMessage) => string | null;
  /** Stop reading after the handshake (a stalled upstream). */
  readonly stopReading?: boolean;
  /** Listen on this unix socket instead of 127.0.0.1:0. */
  readonly socketPath?: string;
}

/** An upstream that accepts any WebSocket handshake and echoes every data frame; answers close with close. */
export class EchoUpstream {
  readonly server: http.Server;
  readonly connections: UpstreamConnection[] = [];
  /** Plain HTTP requests it got (not upgrades). */
  readonly plainRequests: IncomingMessage[] = [];
  port = 0;

  constructor(private readonly options: EchoUpstreamOptions = {}) {
    this.server = http.createServer((req, res) => {
      this.plainRequests.push(req);
      res.end('plain\n');
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#upgrade(req, socket, head));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => {
      if (this.options.socketPath !== undefined) this.server.listen(this.options.socketPath, resolve);
      else this.server.listen(0, '127.0.0.1', resolve);
    });
    if (this.options.socketPath === undefined) this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => {});
    const custom = this.options.answer?.(req) ?? null;
    if (custom !== null) {
      socket.end(custom);
      return;
    }
    const key = String(req.headers['sec-websocket-key']);
    const protocol = req.headers['sec-websocket-protocol'];
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n` +
        `${typeof protocol === 'string' ? `Sec-WebSocket-Protocol: ${protocol.split(',')[0]!.trim()}\r\n` : ''}X-Upstream: echo\r\n\r\n`,
    );
    const reader = new FrameReader();
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // The http server's sockets are half-open: a peer's end is answered with ours, as WebSocket servers do.
    socket.on('end', () => socket.end());
    this.connections.push({ request: req, socket, reader, closed });
    if (this.options.stopReading) {
      socket.pause();
      return;
    }
    let answered = 0;
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      // Every frame stays in reader.frames for the test to look at.
      for (const frame of reader.frames.slice(answered)) {
        answered++;
        if (frame.opcode === OP_TEXT || frame.opcode === OP_BINARY) socket.write(encodeFrame(frame.opcode, frame.payload, false));
        else if (frame.opcode === OP_CLOSE && !socket.destroyed) socket.end(encodeFrame(OP_CLOSE, frame.payload.subarray(0, 2), false));
      }
    });
    if (head.length > 0) socket.emit('data', head);
  }

  async close(): Promise<void> {
    for (const connection of this.connections) connection.socket.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A client's side of a WebSocket connection, whichever protocol carries it. */
export interface WebSocketClient {
  /** 101 (HTTP/1.1) or 200 (HTTP/2) once open; otherwise the refusal's status. */
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly reader: FrameReader;
  readonly closed: Promise<void>;
  /** The carrier: the socket (HTTP/1.1) or the stream (HTTP/2). */
  readonly duplex: Duplex;
  send(text: string | Buffer, opcode?: number): void;
  sendRaw(bytes: Buffer): boolean;
  destroy(): void;
}

export interface ClientOptions {
  readonly path?: string;
  readonly host?: string;
  /** Extra or replacing handshake fields; a null value leaves a field out. */
  readonly headers?: Record<string, string | null>;
  readonly method?: string;
  /** Over TLS (HTTP/1.1 forced by ALPN), trusting this CA. */
  readonly tlsCa?: string;
  readonly localAddress?: string;
}

/** Opens a WebSocket over HTTP/1.1 (RFC 6455 §4.1) to 127.0.0.1:port; resolves once the answer's head arrived. */
export function connectWebSocket(port: number, options: ClientOptions = {}): Promise<WebSocketClient> {
  const key = randomBytes(16).toString('base64');
  const fields: Record<string, string | null> = {
    Host: options.host ?? 'ws.test',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
    ...options.headers,
  };
  const head =
    `${options.method ?? 'GET'} ${options.path ?? '/chat'} HTTP/1.1\r\n` +
    Object.entries(fields)
      .filter((entry): entry is [string, string] => entry[1] !== null)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    '\r\n';
  return new Promise((resolve, reject) => {
    const socket: Socket =
      options.tlsCa !== undefined
        ? tls.connect({ port, host: '127.0.0.1', servername: options.host ?? 'ws.test', ca: options.tlsCa, ALPNProtocols: ['http/1.1'] })
        : net.connect({ port, host: '127.0.0.1', ...(options.localAddress !== undefined && { localAddress: options.localAddress }) });
    const reader = new FrameReader();
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    let buffered = Buffer.alloc(0);
    let opened = false;
    socket.on('error', (error) => {
      if (!opened) reject(error);
    });
    socket.once(options.tlsCa !== undefined ? 'secureConnect' : 'connect', () => socket.write(head));
    socket.on('data', (chunk: Buffer) => {
      if (opened) {
        reader.push(chunk);
        return;
      }
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      opened = true;
      const lines = buffered.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = buffered.subarray(end + 4);
      if (status === 101 && headers['sec-websocket-accept'] !== accept(key)) {
        reject(new Error(`a 101 with a wrong Sec-WebSocket-Accept: ${headers['sec-websocket-accept']}`));
        socket.destroy();
        return;
      }
      if (status === 101 && rest.length > 0) reader.push(rest);
      resolve({
        status,
        headers,
        reader,
        closed,
        duplex: socket,
        send: (data, opcode = OP_TEXT) => socket.write(encodeFrame(opcode, data, true)),
        sendRaw: (bytes) => socket.write(bytes),
        destroy: () => socket.destroy(),
      });
    });
  });
}

/** Opens a WebSocket over HTTP/2 (RFC 8441) to the HTTPS listener at port. */
export async function connectWebSocketH2(
  port: number,
  ca: string,
  options: ClientOptions = {},
): Promise<WebSocketClient & { session: http2.ClientHttp2Session }> {
  const host = options.host ?? 'ws.test';
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: host });
  session.on('error', () => {});
  // RFC 8441 §3: only once the server said SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', (settings) =>
      settings.enableConnectProtocol ? resolve() : reject(new Error('the server does not offer extended CONNECT')),
    );
    session.once('error', reject);
  });
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': options.path ?? '/chat',
    ':authority': host,
    'sec-websocket-version': '13',
    ...Object.fromEntries(Object.entries(options.headers ?? {}).filter((entry): entry is [string, string] => entry[1] !== null)),
  });
  stream.on('error', () => {});
  const headers = await new Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
  });
  const reader = new FrameReader();
  stream.on('data', (chunk: Buffer) => reader.push(chunk));
  const closed = new Promise<void>((done) => stream.once('close', () => done()));
  return {
    status: Number(headers[':status']),
    headers,
    reader,
    closed,
    duplex: stream,
    session,
    send: (data, opcode = OP_TEXT) => stream.write(encodeFrame(opcode, data, true)),
    sendRaw: (bytes) => stream.write(bytes),
    destroy: () => {
      stream.destroy();
      session.destroy();
    },
  };
}
