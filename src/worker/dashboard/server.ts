/**
 * [server.dashboard]: the security dashboard's HTTP server, on the listener
 * the master handed over. Routes:
 *
 *   GET  /            the page (token or login cookie), else 401 with the login form
 *   GET  /api/state   the state as JSON, from the master (token or cookie), else 401
 *   GET  /login       the login form
 *   POST /login       token=...: sets the login cookie and redirects to /
 *   POST /logout      ends the login
 *   GET  /app.js, /app.css, /favicon.svg: the page's code and style (no data)
 *
 * Read-only: nothing here changes the server (bans and reloads stay on the
 * command line). Every answer carries a CSP of its own (default-src 'self',
 * frame-ancestors 'none': no inline script, no framing) and nosniff.
 */
import type * as http from 'node:http';
import { nodeHttp } from '../../node-builtins.js';
import { isIP, type Socket } from 'node:net';
import type { CompiledConfig, DashboardSpec } from '../../config/types.js';
import { CidrSet, clientKey } from '../../net/cidr.js';
import { createAudit, createAuditThrottle, withSuppressed, type Audit } from '../audit.js';
import type { MasterPort } from '../master-link.js';
import type { DashboardAssets } from './assets.js';
import { bearerToken, expiredCookie, FailedAttempts, perWorkerLimit, sessionCookie, tokenMatches, validSession } from './auth.js';

/** How long one state from the master is reused (the page polls every few seconds). */
const STATE_CACHE_MS = 1000;
/** An answer from the master slower than this gets 503 (the question stays asked; see MasterPort.dashboardState). */
const STATE_TIMEOUT_MS = 10_000;
/** A login form is one field: anything larger is not one. */
const MAX_FORM_BYTES = 4096;
const TIMEOUT_CHECK_INTERVAL_MS = 1000;
/** Connections one worker keeps open to the dashboard; more are closed as they arrive. */
const MAX_CONNECTIONS = 64;

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // Not no-referrer: with it a browser sends "Origin: null" on the login form's POST.
  'Referrer-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};
/** RFC 9110 §11.6.1: a 401 names the scheme that would work. */
const CHALLENGE = 'Bearer realm="miwidothttp dashboard"';

/** Fixed notices of the login form: never text from the request. */
const NOTICES = {
  none: '',
  wrong: '<p class="notice bad" role="alert">That token was not accepted.</p>',
  locked: '<p class="notice bad" role="alert">Too many failed attempts from this address: wait a minute and try again.</p>',
  origin: '<p class="notice bad" role="alert">The form was sent from another site and was ignored.</p>',
};

type Verdict = { ok: true; via: 'bearer' | 'cookie' } | { ok: false; retryAfterMs: number; tried: boolean };

export function createDashboardServer(config: CompiledConfig, link: MasterPort, assets: DashboardAssets): http.Server {
  const spec = config.server.dashboard as DashboardSpec;
  const audit: Audit = createAudit(config.audit, 'authentication');
  const throttle = createAuditThrottle();
  const share = perWorkerLimit(config.server.workerCount);
  const failures = new FailedAttempts(share.burst, share.refillMs);
  const forwardingProxies = new CidrSet(config.forwarded.trustProxy ? config.forwarded.trustedProxies : []);
  let cached: { at: number; json: Promise<string> } | null = null;

  const clientOf = (socket: Socket): string => {
    const address = socket.remoteAddress ?? '';
    return clientKey(address) ?? address;
  };
  /** HTTPS as the browser sees it: over TLS, or a trusted forwarding proxy says so. */
  const overHttps = (req: http.IncomingMessage): boolean =>
    (req.socket as { encrypted?: boolean }).encrypted === true ||
    (forwardingProxies.has(clientOf(req.socket)) && String(req.headers['x-forwarded-proto'] ?? '').toLowerCase() === 'https');

  /** An attempt that failed or was refused for too many failures: audited at most once a second per client and event. */
  const auditAttempt = (req: http.IncomingMessage, event: string, status: number, detail: string): void => {
    const clientIp = clientOf(req.socket);
    const suppressed = throttle(`${event} ${clientIp}`);
    if (suppressed === null) return;
    audit({
      event,
      status,
      clientIp,
      method: req.method,
      path: (req.url ?? '').split('?', 1)[0],
      detail: withSuppressed(detail, suppressed),
    });
  };

  const authorize = (req: http.IncomingMessage): Verdict => {
    const now = Date.now();
    if (validSession(req.headers.cookie, spec.sessionKey, now)) return { ok: true, via: 'cookie' };
    const token = bearerToken(req.headers.authorization);
    if (token === null) return { ok: false, retryAfterMs: 0, tried: req.headers.authorization !== undefined };
    return checkToken(req, token, 'bearer token');
  };

  const checkToken = (req: http.IncomingMessage, token: string, how: string): Verdict => {
    const now = Date.now();
    const ip = clientOf(req.socket);
    const wait = failures.retryAfterMs(ip, now);
    if (wait > 0) {
      auditAttempt(req, 'auth.dashboard_locked', 429, `${how}: too many failed attempts`);
      return { ok: false, retryAfterMs: wait, tried: true };
    }
    if (tokenMatches(token, spec.tokenSha256)) return { ok: true, via: 'bearer' };
    failures.failed(ip, now);
    auditAttempt(req, 'auth.dashboard_failed', 401, `${how} not accepted`);
    return { ok: false, retryAfterMs: 0, tried: true };
  };

  const send = (
    res: http.ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    headers: http.OutgoingHttpHeaders = {},
  ): void => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Cache-Control': 'no-store', ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };
  const sendLogin = (
    res: http.ServerResponse,
    status: number,
    notice: keyof typeof NOTICES,
    headers: http.OutgoingHttpHeaders = {},
  ): void => send(res, status, 'text/html; charset=utf-8', assets.login.replace('{{message}}', NOTICES[notice]), headers);
  /** 401, or 429 while the client is held back; HTML for the page, JSON for the API. */
  const refuse = (res: http.ServerResponse, verdict: Extract<Verdict, { ok: false }>, json: boolean): void => {
    const locked = verdict.retryAfterMs > 0;
    const headers = locked ? { 'Retry-After': String(Math.ceil(verdict.retryAfterMs / 1000)) } : { 'WWW-Authenticate': CHALLENGE };
    if (json)
      send(
        res,
        locked ? 429 : 401,
        'application/json; charset=utf-8',
        JSON.stringify({ error: locked ? 'too_many_attempts' : 'unauthorized' }),
        headers,
      );
    else sendLogin(res, locked ? 429 : 401, locked ? 'locked' : verdict.tried ? 'wrong' : 'none', headers);
  };

  const state = (): Promise<string> => {
    const now = performance.now();
    if (cached === null || now - cached.at >= STATE_CACHE_MS) cached = { at: now, json: link.dashboardState() };
    return cached.json;
  };

  const serveState = (res: http.ServerResponse): void => {
    let answered = false;
    const timer = setTimeout(() => {
      answered = true;
      send(res, 503, 'application/json; charset=utf-8', JSON.stringify({ error: 'the master did not answer in time' }), {
        'Retry-After': '5',
      });
    }, STATE_TIMEOUT_MS);
    void state().then((json) => {
      clearTimeout(timer);
      if (!answered) send(res, 200, 'application/json; charset=utf-8', json);
    });
  };

  /**
   * A form post from a page of this origin only: no other site can log a
   * browser in or out. Fetch Metadata where the browser sends it
   * (Sec-Fetch-Site), else the Origin header; clients that send neither
   * (curl) are not browsers another site can drive.
   */
  const sameOrigin = (req: http.IncomingMessage): boolean => {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined) return site === 'same-origin' || site === 'none';
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    return origin === `${overHttps(req) ? 'https' : 'http'}://${req.headers.host ?? ''}`;
  };

  const login = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (!sameOrigin(req)) {
      sendLogin(res, 403, 'origin');
      req.resume();
      return;
    }
    readForm(req, (form) => {
      if (form === null) {
        send(res, 400, 'text/plain; charset=utf-8', 'Bad Request\n', { Connection: 'close' });
        return;
      }
      const verdict = checkToken(req, form.get('token') ?? '', 'login form');
      if (!verdict.ok) {
        refuse(res, verdict, false);
        return;
      }
      audit({ event: 'auth.dashboard_login', status: 303, clientIp: clientOf(req.socket), method: 'POST', path: '/login' });
      send(res, 303, 'text/plain; charset=utf-8', 'See Other\n', {
        Location: '/',
        'Set-Cookie': sessionCookie(spec.sessionKey, Date.now(), overHttps(req)),
      });
    });
  };

  /**
   * DNS rebinding: a page of another site whose name resolves to this
   * address could make an operator's browser send wrong tokens and hold the
   * operator's own address back. A browser reaching the dashboard directly
   * names it by an IP address or "localhost" (an SSH tunnel); a name is
   * accepted only through a trusted forwarding proxy, which checked it.
   */
  const hostAllowed = (req: http.IncomingMessage): boolean => {
    if (forwardingProxies.has(clientOf(req.socket))) return true;
    const host = /^(\[[0-9A-Fa-f:.]+\]|[^:]*)(?::[0-9]{1,5})?$/.exec(req.headers.host ?? '')?.[1]?.toLowerCase() ?? '';
    return host === 'localhost' || isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0;
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? '').split('?', 1)[0] ?? '';
    const method = req.method ?? '';
    const file = assets.files.get(path);
    if (!hostAllowed(req)) {
      req.resume();
      send(res, 421, 'text/plain; charset=utf-8', 'Misdirected Request: open the dashboard by its address\n', { Connection: 'close' });
    } else if (method === 'POST' && path === '/login') login(req, res);
    else if (method === 'POST' && path === '/logout') {
      req.resume();
      if (!sameOrigin(req)) sendLogin(res, 403, 'origin');
      else send(res, 303, 'text/plain; charset=utf-8', 'See Other\n', { Location: '/login', 'Set-Cookie': expiredCookie(overHttps(req)) });
    } else if (method !== 'GET' && method !== 'HEAD') {
      req.resume();
      send(res, 405, 'text/plain; charset=utf-8', 'Method Not Allowed\n', { Allow: 'GET, HEAD, POST' });
    } else if (file !== undefined) send(res, 200, file.type, file.body, { 'Cache-Control': 'no-cache' });
    else if (path === '/login') sendLogin(res, 200, 'none');
    else if (path !== '/' && path !== '/api/state') send(res, 404, 'text/plain; charset=utf-8', 'Not Found\n');
    else {
      const verdict = authorize(req);
      if (!verdict.ok) refuse(res, verdict, path === '/api/state');
      else if (path === '/') send(res, 200, 'text/html; charset=utf-8', assets.page);
      else serveState(res);
    }
  };

  const server = nodeHttp.createServer(
    {
      maxHeaderSize: 8192,
      headersTimeout: 5000,
      requestTimeout: 15_000,
      keepAliveTimeout: 5000,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    handle,
  );
  // A few operators' browsers, not a crowd: a flood of connections costs the worker no more than these.
  server.maxConnections = MAX_CONNECTIONS;
  const securityAudit = createAudit(config.audit);
  server.on('drop', (peer?: { remoteAddress?: string }) => {
    const address = peer?.remoteAddress ?? '';
    const clientIp = clientKey(address) ?? address;
    const suppressed = throttle(`drop ${clientIp}`);
    if (suppressed !== null)
      securityAudit({
        event: 'connection.limit_exceeded',
        clientIp,
        detail: withSuppressed(`dashboard: ${MAX_CONNECTIONS} connections open at this worker`, suppressed),
      });
  });
  return server;
}

/** An application/x-www-form-urlencoded body of at most MAX_FORM_BYTES, or null. */
function readForm(req: http.IncomingMessage, done: (form: URLSearchParams | null) => void): void {
  const type = String(req.headers['content-type'] ?? '')
    .split(';', 1)[0]!
    .trim()
    .toLowerCase();
  const length = req.headers['content-length'];
  if (type !== 'application/x-www-form-urlencoded' || (length !== undefined && !/^[0-9]{1,4}$/.test(length))) {
    req.resume();
    done(null);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  let finished = false;
  const finish = (form: URLSearchParams | null): void => {
    if (finished) return;
    finished = true;
    done(form);
  };
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) over = true;
    else chunks.push(chunk);
  });
  req.once('end', () => finish(over ? null : new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
  req.once('error', () => finish(null));
}
