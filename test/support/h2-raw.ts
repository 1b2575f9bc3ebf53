/**
 * A raw HTTP/2 client for the tests that must break the rules node:http2
 * keeps (RFC 9113 framing by hand): resetting streams as fast as they are
 * opened, ignoring SETTINGS_MAX_CONCURRENT_STREAMS, sending a header block
 * that never ends, sending connection-specific fields. Header blocks are
 * HPACK literals without indexing or Huffman (RFC 7541 §6.2.2); what the
 * server sends is kept as frames, never decoded beyond the frame header.
 */
import net from 'node:net';
import tls from 'node:tls';

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
/** RFC 9113 §7. */
export const ERROR_CODE = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  SETTINGS_TIMEOUT: 0x4,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  ENHANCE_YOUR_CALM: 0xb,
} as const;
/** RFC 9113 §6.5.2. */
export const SETTING = { MAX_CONCURRENT_STREAMS: 0x3, INITIAL_WINDOW_SIZE: 0x4 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** RFC 7541 §5.1 integer with an N-bit prefix. */
function hpackInteger(value: number, prefixBits: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [value];
  const out = [max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A header block of literal fields without indexing, names and values raw (no Huffman). */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const nameBytes = Buffer.from(name, 'latin1');
    const valueBytes = Buffer.from(value, 'latin1');
    parts.push(
      Buffer.from([0x00, ...hpackInteger(nameBytes.length, 7)]),
      nameBytes,
      Buffer.from(hpackInteger(valueBytes.length, 7)),
      valueBytes,
    );
  }
  return Buffer.concat(parts);
}

/** The request pseudo-headers for GET `path` at `authority`, then `extra`. */
export function getRequest(authority: string, path: string, extra: readonly (readonly [string, string])[] = []): Buffer {
  return headerBlock([[':method', 'GET'], [':scheme', 'https'], [':authority', authority], [':path', path], ...extra]);
}

export function rstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

export interface Goaway {
  readonly lastStreamId: number;
  readonly code: number;
}

export class RawH2Client {
  readonly frames: Frame[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  #buffer: Buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];

  private constructor(
    readonly socket: tls.TLSSocket,
    private readonly ackSettings: boolean,
  ) {
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => {
      this.closed = true;
      this.#notify();
    });
    // A reset by the server is one of the outcomes the tests look for.
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
  }

  /**
   * Connects from `localAddress` (default 127.0.0.1), negotiates h2 and sends
   * the preface with `settings` ([id, value] pairs); `ackSettings` false never
   * acknowledges the server's.
   */
  static connect(
    port: number,
    servername: string,
    options: { settings?: readonly (readonly [number, number])[]; ackSettings?: boolean; localAddress?: string } = {},
  ): Promise<RawH2Client> {
    const { settings = [], ackSettings = true, localAddress = '127.0.0.1' } = options;
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host: '127.0.0.1', port, localAddress });
      const socket = tls.connect({ socket: tcp, servername, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      socket.once('error', reject);
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          reject(new Error(`ALPN chose ${String(socket.alpnProtocol)}, not h2`));
          return;
        }
        const payload = Buffer.alloc(6 * settings.length);
        settings.forEach(([id, value], i) => {
          payload.writeUInt16BE(id, 6 * i);
          payload.writeUInt32BE(value, 6 * i + 2);
        });
        socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, payload)]));
        resolve(new RawH2Client(socket, ackSettings));
      });
    });
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || !this.socket.writable) resolve();
      else this.socket.write(bytes, () => resolve());
    });
  }

  /** The server's GOAWAY, if one came. */
  goaway(): Goaway | null {
    const found = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return found === undefined ? null : { lastStreamId: found.payload.readUInt32BE(0) & 0x7fffffff, code: found.payload.readUInt32BE(4) };
  }

  /** The code of the server's RST_STREAM for `streamId`, or null. */
  resetCode(streamId: number): number | null {
    const found = this.frames.find((f) => f.type === FRAME.RST_STREAM && f.streamId === streamId);
    return found === undefined ? null : found.payload.readUInt32BE(0);
  }

  /** Resolves with the first frame matching `test`, or null on close or after `timeoutMs`. */
  async waitFor(test: (f: Frame) => boolean, timeoutMs: number): Promise<Frame | null> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(test);
      if (found !== undefined) return found;
      const left = until - performance.now();
      if (this.closed || left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #read(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      const f: Frame = {
        type: this.#buffer[3]!,
        flags: this.#buffer[4]!,
        streamId: this.#buffer.readUInt32BE(5) & 0x7fffffff,
        payload: this.#buffer.subarray(9, 9 + length),
      };
      this.#buffer = this.#buffer.subarray(9 + length);
      // RFC 9113 §6.5.3: SETTINGS are acknowledged; nothing else is answered.
      if (this.ackSettings && f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && this.socket.writable)
        this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      this.frames.push(f);
    }
    this.#notify();
  }
}
