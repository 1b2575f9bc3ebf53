/**
 * A proxy backend's raw keys -> ProxyBackendSpec: targets (http://, https://,
 * unix:), the upstream TLS settings, HTTP/2, health checks, WebSocket. One
 * function for every place a backend can be configured ([vhosts.backend],
 * [vhosts.routes.backend]), so they cannot drift. Pure, like compile.ts: the
 * TLS files are read by the preflight and the master (upstream-tls.ts).
 */
import path from 'node:path';
import { parseDnsName } from '../tls/sni.js';
import type { ConfigProblem } from './problem.js';
import type { RawProxyBackend } from './schema.js';
import type { ProxyBackendSpec, ProxyTarget, UpstreamTlsSpec } from './types.js';

/** sun_path of struct sockaddr_un holds 108 bytes, the terminating NUL among them (unix(7)). */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Directories shared by unrelated programs: a unix: target directly in one
 * is bound into the jail alone, never the directory, whose other sockets
 * (and files) are no business of a worker.
 */
const SHARED_DIRECTORIES: ReadonlySet<string> = new Set([
  '/',
  '/run',
  '/var/run',
  '/run/user',
  '/tmp',
  '/var/tmp',
  '/dev',
  '/dev/shm',
  '/var',
  '/var/lib',
  '/srv',
  '/home',
  '/root',
  '/etc',
  '/opt',
  '/usr',
]);

export interface BackendContext {
  /** Relative paths in the config start where the command runs. */
  readonly resolvePath: (file: string) => string;
  /** The operator's jail ([process.isolation] chroot) as a host path, or null. */
  readonly chroot: string | null;
}

/** A unix: target: where the worker finds the socket (inside its jail) and where it is on the host. */
function compileSocketTarget(url: string, weight: number, key: string, context: BackendContext, problems: ConfigProblem[]): ProxyTarget {
  const hostSocketPath = path.resolve(url.slice('unix:'.length));
  if (url.includes('\0') || url.slice('unix:'.length) !== hostSocketPath) {
    problems.push({ key, message: 'a unix: target is an absolute, normalised path: "unix:/run/app/app.sock"' });
  }
  const jail = context.chroot;
  // Inside the operator's jail the worker reaches it by its path there; elsewhere at its own path. Either way
  // its directory is bound in (a socket seen through the jail's overlay cannot be connected to), so an
  // application that makes its socket anew is still reached, unless that directory is shared.
  const inside = jail !== null && hostSocketPath.startsWith(jail + path.sep);
  const socketPath = inside ? path.join('/', path.relative(jail, hostSocketPath)) : hostSocketPath;
  const dir = path.dirname(hostSocketPath);
  // Inside the chroot its directory is visible to the worker anyway (unless it is the jail's root, which cannot be bound over).
  const alone = inside ? dir === jail : SHARED_DIRECTORIES.has(dir);
  const hostPath = alone ? hostSocketPath : dir;
  const jailBind = { hostPath, jailPath: inside ? path.join('/', path.relative(jail, hostPath)) : hostPath };
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    problems.push({ key, message: `the socket path is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a unix socket address holds` });
  }
  return { url, weight, socketPath, hostSocketPath, jailBind };
}

function compileTarget(url: string, weight: number, key: string, context: BackendContext, problems: ConfigProblem[]): ProxyTarget {
  if (url.startsWith('unix:')) return compileSocketTarget(url, weight, key, context, problems);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    problems.push({ key, message: 'not a valid URL' });
    return { url, weight, socketPath: null, hostSocketPath: null, jailBind: null };
  }
  if (parsed.search || parsed.hash || parsed.username || parsed.password) {
    problems.push({ key, message: 'must not carry a query, fragment or credentials' });
  }
  return { url, weight, socketPath: null, hostSocketPath: null, jailBind: null };
}

function compileUpstreamTls(
  backend: RawProxyBackend,
  key: string,
  hasHttpsTarget: boolean,
  context: BackendContext,
  problems: ConfigProblem[],
): UpstreamTlsSpec | null {
  const set: [string, unknown][] = [
    ['ca_file', backend.ca_file],
    ['client_cert_file', backend.client_cert_file],
    ['client_key_file', backend.client_key_file],
    ['server_name', backend.server_name],
    ['verify', backend.verify === false ? false : undefined],
  ];
  const given = set.filter(([, value]) => value !== undefined);
  if (given.length === 0) return null;
  if (!hasHttpsTarget) {
    // Refused rather than ignored: a CA file on an http:// target would suggest a protection that is not there.
    for (const [name] of given) problems.push({ key: `${key}.${name}`, message: 'only applies to https:// targets, and there is none' });
  }
  if ((backend.client_cert_file === undefined) !== (backend.client_key_file === undefined)) {
    problems.push({ key: `${key}.client_key_file`, message: 'client_cert_file and client_key_file go together' });
  }
  let serverName: string | null = null;
  if (backend.server_name !== undefined) {
    serverName = parseDnsName(backend.server_name, false);
    if (serverName === null) problems.push({ key: `${key}.server_name`, message: 'must be a DNS host name (RFC 6066 §3: no IP address)' });
  }
  const file = (value: string | undefined): string | null => (value === undefined ? null : context.resolvePath(value));
  return {
    caFile: file(backend.ca_file),
    clientCertFile: file(backend.client_cert_file),
    clientKeyFile: file(backend.client_key_file),
    serverName,
    verify: backend.verify,
    pem: null,
  };
}

/** The proxy backend configured at `key` ("vhosts[0].backend"). */
export function compileProxyBackend(
  backend: RawProxyBackend,
  key: string,
  context: BackendContext,
  problems: ConfigProblem[],
): ProxyBackendSpec {
  if ((backend.target === undefined) === (backend.targets === undefined)) {
    problems.push({ key: `${key}.target`, message: 'set exactly one of target and targets' });
  }
  const targets =
    backend.targets !== undefined
      ? backend.targets.map((target, i) => compileTarget(target.url, target.weight, `${key}.targets[${i}].url`, context, problems))
      : backend.target !== undefined
        ? [compileTarget(backend.target, 1, `${key}.target`, context, problems)]
        : [];
  const hasHttpsTarget = targets.some((target) => /^https:/i.test(target.url));
  const health = backend.health_check;
  if (health !== undefined && health.timeout > health.interval) {
    problems.push({ key: `${key}.health_check.timeout`, message: 'must not exceed health_check.interval' });
  }
  return {
    type: 'proxy',
    configKey: key,
    targets,
    loadBalancing: backend.load_balancing,
    connectTimeoutMs: backend.connect_timeout * 1000,
    upstreamTimeoutMs: backend.timeout * 1000,
    maxFails: backend.max_fails,
    failTimeoutMs: backend.fail_timeout * 1000,
    preserveHost: backend.preserve_host,
    keepAlive: backend.keepalive,
    webSocket: backend.websocket,
    protocol: backend.protocol,
    tls: compileUpstreamTls(backend, key, hasHttpsTarget, context, problems),
    healthCheck:
      health === undefined
        ? null
        : {
            path: health.path,
            intervalMs: health.interval * 1000,
            timeoutMs: health.timeout * 1000,
            fails: health.fails,
            passes: health.passes,
          },
  };
}
