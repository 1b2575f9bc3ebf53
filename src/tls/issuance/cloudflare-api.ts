/**
 * The Cloudflare API v4 as both Cloudflare users need it (the Origin CA
 * issuer and the DNS-01 provider): a Bearer token, JSON in and out, and the
 * envelope every answer comes in,
 *   {"success": bool, "errors": [{"code", "message"}], "messages": [...], "result": ...}
 * where a failure is `success: false` or an HTTP error status, and the first
 * error says why.
 *
 * The token is a credential for the operator's whole zone (or account): it
 * is held in a private field, sent only in the Authorization header, never
 * put in a message or a log line, and scrubbed from anything the API sends
 * back before that is quoted.
 */
import { IssuanceError } from './types.js';

export const CLOUDFLARE_API_BASE = 'https://api.cloudflare.com/client/v4';

/** The Origin CA validities the API accepts, in days. */
export const ORIGIN_CA_VALIDITY_DAYS = [7, 30, 90, 365, 730, 1095, 5475] as const;
export type OriginCaValidityDays = (typeof ORIGIN_CA_VALIDITY_DAYS)[number];
/**
 * A year rather than the API's 15-year default: renewal runs anyway
 * ([ssl] auto_renew), and a key that changes yearly is a key a leak
 * outlives by a year at most.
 */
export const ORIGIN_CA_DEFAULT_VALIDITY_DAYS: OriginCaValidityDays = 365;

export const CLOUDFLARE_DEFAULTS = {
  requestTimeoutMs: 30_000,
  /** Enough for any envelope these endpoints send (a certificate is a few KiB). */
  maxResponseBytes: 1024 * 1024,
} as const;

const MESSAGE_MAX_CHARS = 300;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export interface CloudflareApiOptions {
  /** An API token (Authorization: Bearer), from the environment. */
  readonly apiToken: string;
  /** Default CLOUDFLARE_API_BASE; plain http only to a loopback address (a local test double). */
  readonly apiBaseUrl?: string;
  readonly requestTimeoutMs?: number;
}

interface Envelope {
  readonly success?: unknown;
  readonly errors?: unknown;
  readonly result?: unknown;
}

export class CloudflareApi {
  readonly #token: string;
  readonly #base: string;
  readonly #timeoutMs: number;

  constructor(options: CloudflareApiOptions) {
    // A token is printable ASCII without spaces; anything else would be a
    // header injection or a copy-paste accident, and is refused without
    // repeating it.
    if (!isWellFormedToken(options.apiToken)) {
      throw new IssuanceError('the Cloudflare API token is empty or has characters a token cannot have');
    }
    this.#token = options.apiToken;
    this.#base = checkApiBase(options.apiBaseUrl ?? CLOUDFLARE_API_BASE);
    this.#timeoutMs = options.requestTimeoutMs ?? CLOUDFLARE_DEFAULTS.requestTimeoutMs;
  }

  /**
   * One API call; resolves with the envelope's `result`.
   * @param what what the call is for, the start of any error ("creating TXT _acme-challenge.example.com").
   * @throws IssuanceError `what: HTTP 403: error 10000: Authentication error`
   */
  async call(
    what: string,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    options: { query?: Record<string, string>; body?: unknown; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    const url = new URL(`${this.#base}${path}`);
    for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          accept: 'application/json',
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        // A redirect would carry the token somewhere we did not choose.
        redirect: 'error',
        signal,
      });
    } catch (error) {
      throw this.#transportError(what, url, error, options.signal, timeout);
    }
    let text: string;
    try {
      text = await readBounded(response, what);
    } catch (error) {
      if (error instanceof IssuanceError) throw error;
      throw this.#transportError(what, url, error, options.signal, timeout);
    }
    let envelope: Envelope | null = null;
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) envelope = parsed as Envelope;
    } catch {
      // Not JSON: a proxy's error page, or not the API at all.
    }
    if (envelope === null) {
      const type = response.headers.get('content-type') ?? 'no content type';
      throw new IssuanceError(`${what}: HTTP ${response.status}, not a Cloudflare API envelope (${this.#scrub(type)})`);
    }
    if (response.ok && envelope.success === true) return envelope.result;
    throw new IssuanceError(`${what}: HTTP ${response.status}: ${this.#firstError(envelope)}`);
  }

  #transportError(what: string, url: URL, error: unknown, callerSignal: AbortSignal | undefined, timeout: AbortSignal): IssuanceError {
    if (callerSignal?.aborted) return new IssuanceError(`${what}: aborted`, { cause: callerSignal.reason });
    if (timeout.aborted) return new IssuanceError(`${what}: no answer from ${url.origin} within ${this.#timeoutMs / 1000}s`);
    return new IssuanceError(`${what}: cannot reach ${url.origin}: ${this.#scrub(networkProblem(error))}`);
  }

  #firstError(envelope: Envelope): string {
    const errors = Array.isArray(envelope.errors) ? (envelope.errors as unknown[]) : [];
    const first = errors[0] as { code?: unknown; message?: unknown } | undefined;
    if (first === undefined || first === null || typeof first !== 'object') {
      return envelope.success === true ? 'the API said success with an error status' : 'the API reported failure without an error';
    }
    const code = typeof first.code === 'number' || typeof first.code === 'string' ? `error ${first.code}` : 'error';
    const message = typeof first.message === 'string' ? first.message : 'no message';
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    return `${code}: ${this.#scrub(message)}${more}`;
  }

  /** One line, bounded, and never the token even if the far end echoed it. */
  #scrub(text: string): string {
    const line = text
      .split(this.#token)
      .join('[token]')
      .replace(/\s*[\r\n]+\s*/g, ' ')
      .trim();
    return line.length > MESSAGE_MAX_CHARS ? `${line.slice(0, MESSAGE_MAX_CHARS)}...` : line;
  }

  /** Keeps the token out of util.inspect, console.log and pino's serializers. */
  toJSON(): object {
    return { apiBase: this.#base };
  }
}

/** https, or http to a loopback address; no trailing slash. */
/** A token is printable ASCII without spaces. */
export function isWellFormedToken(token: unknown): token is string {
  return typeof token === 'string' && /^[\x21-\x7e]+$/.test(token);
}

export function checkApiBase(apiBaseUrl: string): string {
  let url: URL;
  try {
    url = new URL(apiBaseUrl);
  } catch {
    throw new IssuanceError(`the Cloudflare API base ${JSON.stringify(apiBaseUrl)} is not a URL`);
  }
  if (url.username !== '' || url.password !== '') throw new IssuanceError('the Cloudflare API base must not hold credentials');
  const loopback = LOOPBACK_HOSTS.has(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new IssuanceError(`the Cloudflare API base ${url.origin} is not https (plain http is only for a loopback test double)`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

async function readBounded(response: Response, what: string): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > CLOUDFLARE_DEFAULTS.maxResponseBytes) {
    await response.body?.cancel();
    throw new IssuanceError(`${what}: HTTP ${response.status}: an answer of ${declared} bytes is too large`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body !== null) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      // Throwing out of for-await cancels the stream.
      if (size > CLOUDFLARE_DEFAULTS.maxResponseBytes) {
        throw new IssuanceError(
          `${what}: HTTP ${response.status}: the answer is larger than ${CLOUDFLARE_DEFAULTS.maxResponseBytes} bytes`,
        );
      }
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** fetch() says "fetch failed"; the reason is in its cause (ECONNREFUSED, a certificate problem, ...). */
function networkProblem(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.message === 'string') return cause.message.replace(/[\r\n]+/g, ' ');
  return error instanceof Error ? error.message : String(error);
}
