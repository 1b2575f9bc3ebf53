/**
 * The stalled-stream check of the HTTP/2 session policy (src/worker/http2.ts),
 * in process, sweep by sweep: what counts as a stream that stopped moving.
 * The real thing (a client that opens no flow-control window, answered with
 * RST_STREAM CANCEL while its connection serves on) is driven end to end in
 * test/system/http2.test.ts.
 */
import assert from 'node:assert/strict';
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { CompiledConfig } from '../../src/config/types.js';
import type { Audit } from '../../src/worker/audit.js';
import type { ConnectionState } from '../../src/worker/connection/watch.js';
import { Http2Sessions } from '../../src/worker/http2.js';
import type { WorkerMetrics } from '../../src/worker/metrics.js';
import type { StreamWriteProgress } from '../../src/worker/response-headers.js';

const WRITE_TIMEOUT_MS = 3000;
const SWEEP_MS = 1000;

/** One stream's answer as the sweep sees it: a queue of `bufferSize` bytes, and the writes taken so far. */
class Answer implements StreamWriteProgress {
  writesSubmitted = 0;
  queuedAtSweep = 0;
  writesAtSweep = 0;
  stalledSince: number | null = null;
  closedWith: number | null = null;
  readonly stream: ServerHttp2Stream;

  constructor(
    id: number,
    public bufferSize: number,
  ) {
    const answer = this;
    this.stream = {
      id,
      destroyed: false,
      closed: false,
      get bufferSize() {
        return answer.bufferSize;
      },
      close(code: number) {
        answer.closedWith = code;
      },
    } as unknown as ServerHttp2Stream;
  }
}

function setup(): { sessions: Http2Sessions; state: ConnectionState; audited: Parameters<Audit>[0][]; sweep: (at: number) => void } {
  const audited: Parameters<Audit>[0][] = [];
  const config = {
    limits: { maxHeaders: 100, maxHeaderBytes: 8192, maxConcurrentStreams: 100, maxRequestsPerConnection: 1000 },
    timeouts: { writeTimeoutMs: WRITE_TIMEOUT_MS, headerReadTimeoutMs: 10_000, keepAliveTimeoutMs: 60_000 },
  } as unknown as CompiledConfig;
  const sessions = new Http2Sessions(
    config,
    pino({ level: 'silent' }),
    { rejection: () => undefined } as unknown as WorkerMetrics,
    (event) => audited.push(event),
    () => 0,
    () => false,
  );
  const state = {
    socket: { remoteAddress: '192.0.2.7', bytesRead: 0 } as unknown as Socket,
    protocol: 'https',
    session: null,
    streams: new Set<StreamWriteProgress>(),
    refused: false,
    inFlight: 1,
    requests: 0,
    idleSince: 0,
    bytesReadAtIdle: 0,
    headStartedAt: null,
    bytesWrittenAtSweep: 0,
    stalledSince: null,
  } satisfies ConnectionState;
  const session = { closed: false, destroyed: false } as unknown as ServerHttp2Session;
  return { sessions, state, audited, sweep: (at) => sessions.sweep(state, session, at) };
}

describe('HTTP/2: a stalled stream is reset at write_timeout by the connection sweep', () => {
  it('bytes queued and no write for write_timeout: RST_STREAM CANCEL, audited with the client and the stream', () => {
    const { sessions, state, audited, sweep } = setup();
    const answer = new Answer(5, 16384);
    sessions.watchStream(answer, state);
    for (let at = 0; at < WRITE_TIMEOUT_MS + 3 * SWEEP_MS; at += SWEEP_MS) sweep(at);
    assert.equal(answer.closedWith, 8, 'CANCEL (RFC 9113 §7)');
    assert.equal(audited.length, 1);
    assert.equal(audited[0]!.event, 'response.write_timeout');
    assert.equal(audited[0]!.clientIp, '192.0.2.7');
    assert.equal(state.streams?.size, 0, 'the reset stream is no longer watched');
    assert.match(String(audited[0]!.detail), /HTTP\/2 stream 5: 16384 bytes queued/);
  });

  it('a queue that keeps its size while writes go on (a file piped in equal chunks) is moving, not stalled', () => {
    const { sessions, state, audited, sweep } = setup();
    const answer = new Answer(1, 131072);
    sessions.watchStream(answer, state);
    for (let at = 0; at < 5 * WRITE_TIMEOUT_MS; at += SWEEP_MS) {
      answer.writesSubmitted += 1;
      sweep(at);
    }
    assert.equal(answer.closedWith, null);
    assert.equal(audited.length, 0);
  });

  it('a queue that shrinks, or nothing queued (a stream waiting for its upstream), is never reset', () => {
    const { sessions, state, audited, sweep } = setup();
    const draining = new Answer(1, 65536);
    const waiting = new Answer(3, 0);
    sessions.watchStream(draining, state);
    sessions.watchStream(waiting, state);
    for (let at = 0; at < 5 * WRITE_TIMEOUT_MS; at += SWEEP_MS) {
      draining.bufferSize = Math.max(1, draining.bufferSize - 4096);
      sweep(at);
    }
    assert.equal(draining.closedWith, null);
    assert.equal(waiting.closedWith, null);
    assert.equal(audited.length, 0);
  });

  it('a stream that closed is no longer watched', () => {
    const { sessions, state, audited, sweep } = setup();
    const answer = new Answer(7, 4096);
    sessions.watchStream(answer, state);
    sessions.unwatchStream(answer, state);
    for (let at = 0; at < 3 * WRITE_TIMEOUT_MS; at += SWEEP_MS) sweep(at);
    assert.equal(answer.closedWith, null);
    assert.equal(audited.length, 0);
    assert.equal(state.streams?.size, 0);
  });
});
