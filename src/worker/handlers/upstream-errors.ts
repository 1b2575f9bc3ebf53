/**
 * What a failed upstream attempt means: the answer the client gets, whether
 * it counts against the target (and allows a retry), and what the log says.
 */
import { errors as undiciErrors } from 'undici';
import type { ErrorCode } from '../errors.js';

/** The error a request fails with, and whether it counts against the target. */
export interface Outcome {
  readonly code: ErrorCode;
  /** nginx `proxy_next_upstream error timeout`: marks the target and allows a retry. */
  readonly upstreamFailure: boolean;
}

const TIMED_OUT: Outcome = { code: 'UPSTREAM_TIMEOUT', upstreamFailure: true };
const UNREACHABLE: Outcome = { code: 'UPSTREAM_UNAVAILABLE', upstreamFailure: true };
const CLOSING: Outcome = { code: 'UPSTREAM_UNAVAILABLE', upstreamFailure: false };
const MALFORMED: Outcome = { code: 'UPSTREAM_BAD_RESPONSE', upstreamFailure: false };
const REFUSED_REQUEST: Outcome = { code: 'BAD_REQUEST', upstreamFailure: false };
const UNEXPECTED: Outcome = { code: 'INTERNAL', upstreamFailure: false };
const TLS_FAILED: Outcome = { code: 'UPSTREAM_TLS_FAILED', upstreamFailure: true };

/**
 * OpenSSL's verification results as Node names them (X509_V_ERR_* without
 * the prefix: DEPTH_ZERO_SELF_SIGNED_CERT, CERT_HAS_EXPIRED,
 * UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...), Node's own (ERR_TLS_CERT_ALTNAME_INVALID)
 * and handshake failures (ERR_SSL_*: an alert, a client certificate the
 * upstream required, TLS spoken to a plain port).
 */
const TLS_FAILURE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_CA|PATH_LENGTH_EXCEEDED|HOSTNAME_MISMATCH)/;
/** Codes that mean the upstream's certificate did not verify, as opposed to a failed handshake. */
const CERTIFICATE_FAILURE = /^(ERR_TLS_CERT_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_CA|PATH_LENGTH_EXCEEDED|HOSTNAME_MISMATCH)/;

/** What the log says about a failed attempt: the target, and for TLS whether the certificate or the handshake failed. */
export function failureDetail(label: string, err: Error): string {
  const code = errorCode(err) ?? err.name;
  if (CERTIFICATE_FAILURE.test(code)) return `${label} certificate verify failed: ${code}`;
  if (TLS_FAILURE.test(code)) return `${label} TLS handshake failed: ${code}`;
  return `${label} ${code}`;
}

export function errorCode(err: Error): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Map an undici or socket error to the answer the client gets. Only
 * errors reaching or waiting for the upstream count as its failure; a
 * malformed response does not (nginx counts `invalid_header` only when it
 * is listed in proxy_next_upstream, which it is not by default).
 */
export function classify(err: Error): Outcome {
  // llhttp parse errors: the upstream spoke broken HTTP. Their code is
  // HPE_* when llhttp names the error, absent otherwise.
  if (err instanceof undiciErrors.HTTPParserError) return MALFORMED;
  const code = errorCode(err);
  switch (code) {
    case undefined:
      return UNEXPECTED;
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      // nginx answers 504 to a connect timeout as well as a read timeout.
      return TIMED_OUT;
    case 'UND_ERR_SOCKET':
      // undici reports an unparseable status line or an unrequested 101
      // as a socket error with these messages; everything else under this
      // code is the connection dying before the response.
      return err.message === 'bad response' || err.message === 'bad upgrade' ? MALFORMED : UNREACHABLE;
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return MALFORMED;
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      // undici refused what the client sent (a header value, a body shorter
      // than its Content-Length): the request, not the upstream, is at fault.
      return REFUSED_REQUEST;
    case 'UND_ERR_DESTROYED':
    case 'UND_ERR_CLOSED':
      return CLOSING;
    default:
      // TLS failures get an answer of their own, so the log says why
      // (docs/errors.md): they count against the target like any failure
      // to reach it (nginx: an SSL handshake error is an "error").
      if (TLS_FAILURE.test(code)) return TLS_FAILED;
      // Errno codes (ECONNREFUSED, ECONNRESET, ENOTFOUND, EAI_AGAIN,
      // EHOSTUNREACH, ...): the upstream could not be reached.
      return UNREACHABLE;
  }
}
