/**
 * Security headers ([security.headers], and a vhost's own [vhosts.headers])
 * on every response, error answers included, whichever handler writes it and
 * however (writeHead with an object or an array, or implicit headers on
 * end()). They are added at writeHead by the response class the worker's
 * servers use, so no handler can forget them. A header the handler (or an
 * upstream) sets itself wins; headers configured as "" are removed from
 * whatever is sent. HSTS goes only on HTTPS responses (RFC 6797 §7.2).
 *
 * The policy is the server's until the route stage names the vhost's
 * (`useHeaderPolicy`). Handlers that answer from precomputed, frozen header
 * objects (the static file cache) get the merged object computed once per
 * object and policy: adding the headers with setHeader on every request
 * cost a seventh of static throughput (measured: 77k vs 89k req/s).
 */
import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { nodeHttp } from '../node-builtins.js';
import { Http2ServerResponse, type Http2ServerRequest } from 'node:http2';
import type { HeaderPolicy, Protocol } from '../config/types.js';
import { httpDate, prepareHead, sendPrepared, type PreparedHead } from './prepared-head.js';

type HeaderList = readonly (readonly [string, string])[];

/** The headers a response over `protocol` gets from `policy`. */
export function policyHeaders(policy: HeaderPolicy, protocol: Protocol): HeaderList {
  return protocol === 'https' ? [...policy.add, ...policy.addOverHttps] : policy.add;
}

interface Applied {
  readonly baseline: HeaderList;
  /** The baseline without removed names, each with its lower-case name: what a head given as a flat list gets. */
  readonly listBaseline: readonly (readonly [name: string, value: string, lower: string])[];
  readonly removed: ReadonlySet<string>;
  readonly mergedFor: WeakMap<OutgoingHttpHeaders, OutgoingHttpHeaders>;
  /** Prepared heads (prepared-head.ts) by merged header object and status; null: not preparable. */
  readonly headsFor: WeakMap<OutgoingHttpHeaders, Map<number, PreparedHead | null>>;
  /** HTTP/2 heads (http2Head, below) by merged header object and status; null: not preparable. */
  readonly http2HeadsFor: WeakMap<OutgoingHttpHeaders, Map<number, PreparedHttp2Head | null>>;
}

/** The header policy a response answers with, once the route stage set the vhost's (useHeaderPolicy). */
export const POLICY = Symbol('headerPolicy');
/** The protocol an HTTP/1 response goes out over (secureResponseClass): HSTS only over HTTPS. */
export const PROTOCOL = Symbol('protocol');
/** A response's `answer` (below): a cached answer's status, frozen headers and body in one call. */
export const ANSWER = Symbol('answer');

type Answer = (statusCode: number, headers: OutgoingHttpHeaders, body: Buffer | undefined) => void;

/**
 * Answers `res` with `statusCode`, `headers` (a frozen object the handler
 * reuses for every response of this kind, such as a cached file's) and
 * `body` (undefined: none): over HTTP/1 through a head prepared once per
 * headers object, policy and status (prepared-head.ts), else writeHead and end.
 */
export function answerCached(res: ServerResponse, statusCode: number, headers: OutgoingHttpHeaders, body: Buffer | undefined): void {
  const own = (res as unknown as { [ANSWER]?: Answer })[ANSWER];
  if (own !== undefined) own.call(res, statusCode, headers, body);
  else {
    res.writeHead(statusCode, headers);
    res.end(body);
  }
}

/** From the route stage on, `res` answers with the vhost's own policy. */
export function useHeaderPolicy(res: ServerResponse, policy: HeaderPolicy): void {
  (res as unknown as PolicyTarget)[POLICY] = policy;
}

/** The response's own writeHead, called with the response as `this` (so it can be a method, not a closure per call). */
type WriteHead = (this: PolicyTarget, statusCode: number, headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]) => unknown;

/** What every response class needs of a response to add the policy's headers. */
interface PolicyTarget {
  [POLICY]?: HeaderPolicy;
  hasHeader(name: string): boolean;
  getHeaderNames(): string[];
  setHeader(name: string, value: string): unknown;
  removeHeader(name: string): void;
}

/**
 * The writeHead of every response class: the headers of the policy in force
 * merged under the handler's, removed names taken out, then the real writeHead.
 */
export function policyWriter(serverPolicy: HeaderPolicy, protocol: Protocol, alwaysRemoved: readonly string[]) {
  const applied = new WeakMap<HeaderPolicy, Applied>();
  const appliedFor = (policy: HeaderPolicy): Applied => {
    let entry = applied.get(policy);
    if (entry === undefined) {
      const baseline = policyHeaders(policy, protocol);
      const removed = new Set([...policy.remove, ...alwaysRemoved]);
      entry = {
        baseline,
        listBaseline: baseline
          .map(([name, value]) => [name, value, name.toLowerCase()] as const)
          .filter(([, , lower]) => !removed.has(lower)),
        removed,
        mergedFor: new WeakMap(),
        headsFor: new WeakMap(),
        http2HeadsFor: new WeakMap(),
      };
      applied.set(policy, entry);
    }
    return entry;
  };
  /** The frozen `headers` with the policy's merged in, computed once per object and policy. */
  const mergedOnce = (entry: Applied, headers: OutgoingHttpHeaders): OutgoingHttpHeaders => {
    let merged = entry.mergedFor.get(headers);
    if (merged === undefined) {
      merged = Object.freeze(merge(entry.baseline, entry.removed, headers));
      entry.mergedFor.set(headers, merged);
    }
    return merged;
  };
  const write = (
    response: PolicyTarget,
    writeHead: WriteHead,
    statusCode: number,
    headers: OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined,
  ): void => {
    const entry = appliedFor(response[POLICY] ?? serverPolicy);
    const { baseline, removed } = entry;
    if (Array.isArray(headers) && headers.length % 2 === 0 && response.getHeaderNames().length === 0) {
      // A flat list (the proxy's) on a response with no fields set: one list
      // under the policy, which Node writes as it is. Through setHeader, each
      // field would be copied into the header map and copied out again.
      writeHead.call(response, statusCode, listUnderPolicy(entry, headers));
      return;
    }
    if (headers !== undefined && !Array.isArray(headers)) {
      if (Object.isFrozen(headers)) {
        headers = mergedOnce(entry, headers);
      } else {
        headers = merge(baseline, removed, headers);
      }
    } else {
      // Array form or no headers: fill in through setHeader.
      for (const [name, value] of baseline) if (!response.hasHeader(name)) response.setHeader(name, value);
      if (Array.isArray(headers)) headers = dropRemoved(headers, removed);
    }
    for (const name of removed) response.removeHeader(name);
    writeHead.call(response, statusCode, headers);
  };
  /** The prepared head of frozen `headers` and `statusCode` under the response's policy, or null. */
  const preparedHead = (response: PolicyTarget, statusCode: number, headers: OutgoingHttpHeaders): PreparedHead | null => {
    const entry = appliedFor(response[POLICY] ?? serverPolicy);
    return madeOnce(entry.headsFor, entry, mergedOnce(entry, headers), statusCode, prepareHead);
  };
  /** The HTTP/2 header object of frozen `headers` and `statusCode` under the response's policy, or null. */
  const preparedHttp2Head = (response: PolicyTarget, statusCode: number, headers: OutgoingHttpHeaders): PreparedHttp2Head | null => {
    const entry = appliedFor(response[POLICY] ?? serverPolicy);
    return madeOnce(entry.http2HeadsFor, entry, mergedOnce(entry, headers), statusCode, http2Head);
  };
  return { write, preparedHead, preparedHttp2Head };
}

/**
 * What `make` gives for a merged header object and a status under one policy,
 * made on the first response and kept while the header object lives. `make`
 * is a module function, not a closure: nothing is allocated per response.
 */
function madeOnce<T>(
  cache: WeakMap<OutgoingHttpHeaders, Map<number, T>>,
  entry: Applied,
  merged: OutgoingHttpHeaders,
  statusCode: number,
  make: (statusCode: number, merged: OutgoingHttpHeaders, entry: Applied) => T,
): T {
  let byStatus = cache.get(merged);
  if (byStatus === undefined) {
    byStatus = new Map();
    cache.set(merged, byStatus);
  }
  let made = byStatus.get(statusCode);
  if (made === undefined) {
    made = make(statusCode, merged, entry);
    byStatus.set(statusCode, made);
  }
  return made;
}

/**
 * An HTTP/2 head prepared once: the flat [name, value, ...] list
 * Http2Stream.respond takes, `:status` first, and that list with the Date of
 * the current second after it (http2HeadFields). Given a list that names
 * both, Node neither copies it nor adds to it, where a header object is
 * copied field by field on every response (a measured sixth of what an
 * HTTP/2 worker allocates per request: docs/benchmark.md).
 */
export interface PreparedHttp2Head {
  readonly fields: readonly string[];
  /**
   * The same fields as the header block Node's respond() would build from
   * them ("name\0value\0" and a flags byte each) and their count, for
   * http2-respond.ts; null when Node must check them itself (a field with
   * several values, which some may have only once; TE or HTTP2-Settings).
   */
  readonly block: readonly [string, number] | null;
  /** The second whose Date `dated` and `datedBlock` end with (datedFor). */
  second: number;
  dated: readonly string[];
  datedBlock: readonly [string, number] | null;
}

/**
 * The HTTP/2 head for `statusCode` and `merged` (the security headers
 * already in), as the compatibility layer's writeHead would send it: names
 * lowercased, removed names out, every name and value checked once here.
 * Null when it cannot be prepared (a name twice in different case, a
 * pseudo-header, a Date of its own, a value Node refuses): the ordinary
 * writeHead then answers, or throws Node's error, as before.
 */
function http2Head(statusCode: number, merged: OutgoingHttpHeaders, { removed }: Applied): PreparedHttp2Head | null {
  const fields = [':status', String(statusCode)];
  const named = new Set<string>();
  let singleValued = true;
  try {
    for (const [name, value] of Object.entries(merged)) {
      const lower = name.trim().toLowerCase();
      if (removed.has(lower)) continue;
      if (value === undefined || value === null || lower.startsWith(':') || lower === 'date' || named.has(lower)) return null;
      named.add(lower);
      nodeHttp.validateHeaderName(lower);
      const items = Array.isArray(value) ? value : [String(value)];
      // Node checks these itself (a field some may give once; TE and HTTP2-Settings it refuses in a response).
      if (items.length > 1 || lower === 'te' || lower === 'http2-settings') singleValued = false;
      for (const item of items) {
        nodeHttp.validateHeaderValue(lower, item);
        fields.push(lower, String(item));
      }
    }
  } catch {
    return null;
  }
  Object.freeze(fields);
  const block = singleValued ? headerBlock(fields) : null;
  return { fields, block, second: -1, dated: fields, datedBlock: block };
}

/** A field in Node's header-block form: name, value, and the flags byte (none: the field may be indexed). */
const blockField = (name: string, value: string): string => `${name}\0${value}\0\0`;

function headerBlock(fields: readonly string[]): readonly [string, number] {
  let block = '';
  for (let i = 0; i < fields.length; i += 2) block += blockField(fields[i]!, fields[i + 1]!);
  return Object.freeze([block, fields.length / 2] as const);
}

/** `head` with this second's Date after its fields, in both forms: made once a second. */
function datedFor(head: PreparedHttp2Head): PreparedHttp2Head {
  const second = Math.floor(Date.now() / 1000);
  if (head.second !== second) {
    head.second = second;
    const date = httpDate(second);
    head.dated = Object.freeze([...head.fields, 'date', date]);
    head.datedBlock = head.block === null ? null : Object.freeze([head.block[0] + blockField('date', date), head.block[1] + 1] as const);
  }
  return head;
}

/** http2HeadFields as a header block (PreparedHttp2Head.block), or null when `head` has none. */
export function http2HeadBlock(head: PreparedHttp2Head, sendDate: boolean): readonly [string, number] | null {
  return head.block === null || !sendDate ? head.block : datedFor(head).datedBlock;
}

/** The fields of `head` to send now: with this second's Date (made once a second), or without one for a response that sends none. */
export function http2HeadFields(head: PreparedHttp2Head, sendDate: boolean): readonly string[] {
  return sendDate ? datedFor(head).dated : head.fields;
}

/**
 * The response class of a worker's HTTP/1 servers: one for plain and TLS
 * listeners alike, so that Node's response code, which every request runs
 * through, meets one shape of response instead of one per listener (in a
 * worker that has served both, its property lookups went megamorphic:
 * docs/benchmark.md). Each response carries the protocol it goes out over
 * (set with its request: server.ts); its fields exist from construction.
 */
export function secureResponseClass(serverPolicy: HeaderPolicy): typeof nodeHttp.ServerResponse<IncomingMessage> {
  const overHttp = policyWriter(serverPolicy, 'http', []);
  const overHttps = policyWriter(serverPolicy, 'https', []);
  return class SecureResponse extends nodeHttp.ServerResponse<IncomingMessage> {
    [POLICY]: HeaderPolicy | undefined = undefined;
    [PROTOCOL]: Protocol = 'http';

    [ANSWER](statusCode: number, headers: OutgoingHttpHeaders, body: Buffer | undefined): void {
      const { preparedHead } = this[PROTOCOL] === 'https' ? overHttps : overHttp;
      const head = Object.isFrozen(headers) ? preparedHead(this, statusCode, headers) : null;
      if (head !== null && sendPrepared(this, head, body)) return;
      this.writeHead(statusCode, headers);
      this.end(body);
    }

    override writeHead(
      statusCode: number,
      reasonOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
      maybeHeaders?: OutgoingHttpHeaders | OutgoingHttpHeader[],
    ): this {
      const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : undefined;
      const headers = typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders;
      const { write } = this[PROTOCOL] === 'https' ? overHttps : overHttp;
      write(
        this,
        (status, merged) => (reason === undefined ? super.writeHead(status, merged) : super.writeHead(status, reason, merged)),
        statusCode,
        headers,
      );
      return this;
    }
  };
}

/**
 * Connection-specific fields (RFC 9113 §8.2.2): an HTTP/2 response must not
 * carry them, and Node's HTTP/2 layer throws rather than send one. A handler
 * or an upstream (HTTP/1.1, behind the proxy) may set them; they are dropped
 * here, as an intermediary must.
 */
export const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

/**
 * The same for HTTP/2 responses (always HTTPS: this server speaks no h2c).
 * Node's compatibility layer calls writeHead for implicit headers too, from
 * write() and end(). HTTP/2 has no reason phrase (RFC 9113 §8.3.2): one
 * given is dropped.
 */
export function secureHttp2ResponseClass(serverPolicy: HeaderPolicy): typeof Http2ServerResponse {
  const { write } = policyWriter(serverPolicy, 'https', CONNECTION_SPECIFIC);
  class SecureHttp2Response extends Http2ServerResponse<Http2ServerRequest> {
    [POLICY]?: HeaderPolicy;

    override writeHead(statusCode: number, headers?: OutgoingHttpHeaders | readonly string[]): this;
    override writeHead(statusCode: number, statusMessage: string, headers?: OutgoingHttpHeaders | readonly string[]): this;
    override writeHead(
      statusCode: number,
      reasonOrHeaders?: string | OutgoingHttpHeaders | readonly string[],
      maybeHeaders?: OutgoingHttpHeaders | readonly string[],
    ): this {
      const headers = (typeof reasonOrHeaders === 'string' ? maybeHeaders : reasonOrHeaders) as
        | OutgoingHttpHeaders
        | OutgoingHttpHeader[]
        | undefined;
      write(this, (status, merged) => super.writeHead(status, merged as OutgoingHttpHeaders), statusCode, headers);
      return this;
    }
  }
  // As on an HTTP/1 response, the handlers ask `destroyed` whether the client
  // is gone; Node's HTTP/2 response has no such property (its typing says it has).
  Object.defineProperty(SecureHttp2Response.prototype, 'destroyed', {
    get(this: SecureHttp2Response): boolean {
      return this.stream?.destroyed ?? true;
    },
  });
  return SecureHttp2Response as unknown as typeof Http2ServerResponse;
}

/** baseline, then the handler's headers over it, minus removed ones. */
function merge(baseline: HeaderList, removed: ReadonlySet<string>, given: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const merged: OutgoingHttpHeaders = {};
  const givenNames = new Set(Object.keys(given).map((name) => name.toLowerCase()));
  for (const [name, value] of baseline) if (!givenNames.has(name.toLowerCase())) merged[name] = value;
  for (const [name, value] of Object.entries(given)) if (!removed.has(name.toLowerCase())) merged[name] = value;
  return merged;
}

/**
 * A flat [name, value, ...] head under the policy: the baseline's fields the
 * list does not name (in any case), then the list's own without removed
 * names; the same fields, in the same order, as setHeader for the baseline
 * followed by Node's writeHead of the list would send.
 */
function listUnderPolicy({ listBaseline, removed }: Applied, given: readonly OutgoingHttpHeader[]): OutgoingHttpHeader[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < given.length; i += 2) named.add(String(given[i]).toLowerCase());
  const out: OutgoingHttpHeader[] = [];
  for (const [name, value, lower] of listBaseline) if (!named.has(lower)) out.push(name, value);
  return pushUnremoved(out, given, removed);
}

/** The flat [name, value, name, value, ...] form without removed names. */
function dropRemoved(headers: OutgoingHttpHeader[], removed: ReadonlySet<string>): OutgoingHttpHeader[] {
  return removed.size === 0 ? headers : pushUnremoved([], headers, removed);
}

/** `out` with the fields of a flat list appended, but those with a removed name. */
function pushUnremoved(
  out: OutgoingHttpHeader[],
  headers: readonly OutgoingHttpHeader[],
  removed: ReadonlySet<string>,
): OutgoingHttpHeader[] {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (removed.size === 0 || !removed.has(String(headers[i]).toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}
