/**
 * [server.dashboard] -> DashboardSpec: the listen address, and the token
 * turned into what the workers need to check it (its digest, and the key
 * that signs login cookies). The token itself stays in the master's parse
 * of the file and goes nowhere else.
 */
import { createHash, createHmac } from 'node:crypto';
import { isIP } from 'node:net';
import type { RawConfig } from './schema.js';
import type { DashboardSpec } from './types.js';

/** OWASP ASVS 2.9 / NIST SP 800-63B: 256 bits; `openssl rand -hex 32` gives 64 characters. */
export const MIN_DASHBOARD_TOKEN_BYTES = 32;

/** RFC 6750 §2.1 b64token: what an `Authorization: Bearer` header can carry. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Label of the cookie key derivation (a new label would log every session out). */
const SESSION_KEY_LABEL = 'miwidothttp dashboard session v1';

interface Problem {
  readonly key: string;
  readonly message: string;
}

/** "127.0.0.1:9146" or "[::1]:9146": an IP literal and a port, or null. */
export function parseListenAddress(text: string): { address: string; port: number } | null {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text);
  if (match === null) return null;
  const address = match[1] ?? match[2]!;
  const port = Number(match[3]);
  const family = isIP(address);
  // An IPv6 address only in brackets, an IPv4 one only without.
  if (family === 0 || (family === 6) !== (match[1] !== undefined) || port < 1 || port > 65535) return null;
  return { address, port };
}

export function compileDashboard(raw: RawConfig): { spec: DashboardSpec | null; problems: Problem[] } {
  const dashboard = raw.server.dashboard;
  const problems: Problem[] = [];
  if (!dashboard.enabled) return { spec: null, problems };
  const listen = parseListenAddress(dashboard.listen);
  if (listen === null)
    problems.push({
      key: 'server.dashboard.listen',
      message: 'expected "address:port" with an IP address, such as "127.0.0.1:9146" or "[::1]:9146"',
    });
  // An address another listener takes too is named by the listener overlap check (listen.ts).
  const token = dashboard.token;
  const unset = token === undefined ? null : /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(token);
  if (unset !== null)
    // The load path reported it already, in these words (one line per problem: load.ts drops the repeat).
    problems.push({ key: 'server.dashboard.token', message: `environment variable ${unset[1]} is not set` });
  else if (token === undefined || token === '')
    problems.push({
      key: 'server.dashboard.token',
      message: `required when the dashboard is enabled: token = "\${DASHBOARD_TOKEN}" with ${MIN_DASHBOARD_TOKEN_BYTES} bytes or more (openssl rand -hex 32)`,
    });
  else if (!B64TOKEN.test(token))
    problems.push({
      key: 'server.dashboard.token',
      message: 'must be a Bearer token: letters, digits and - . _ ~ + / only (RFC 6750 §2.1), such as the output of openssl rand -hex 32',
    });
  else if (Buffer.byteLength(token) < MIN_DASHBOARD_TOKEN_BYTES)
    problems.push({
      key: 'server.dashboard.token',
      message: `is ${Buffer.byteLength(token)} bytes; at least ${MIN_DASHBOARD_TOKEN_BYTES} are required (openssl rand -hex 32)`,
    });
  if (listen === null || token === undefined || problems.length > 0) return { spec: null, problems };
  return {
    spec: {
      address: listen.address,
      port: listen.port,
      tokenSha256: createHash('sha256').update(token).digest('hex'),
      sessionKey: createHmac('sha256', token).update(SESSION_KEY_LABEL).digest('hex'),
    },
    problems,
  };
}
