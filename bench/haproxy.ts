/**
 * HAProxy for the benchmark (Debian's haproxy 2.6), in the proxy scenario
 * only: it serves no files. Two threads (nbthread 2) for the two workers of
 * the others. Keep-alive on both sides and connection reuse to the upstream
 * (http-reuse safe) are HAProxy's defaults in HTTP mode; no log is
 * configured, so none is written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's path; BENCH_HAPROXY overrides it, and BENCH_HAPROXY=off runs without HAProxy. */
export const HAPROXY_BINARY = process.env.BENCH_HAPROXY || '/usr/sbin/haproxy';

/** `haproxy -v`'s version, or null when HAProxy is not installed. */
export function haproxyVersion(): string | null {
  if (HAPROXY_BINARY === 'off' || !existsSync(HAPROXY_BINARY)) return null;
  const result = spawnSync(HAPROXY_BINARY, ['-v'], { encoding: 'utf8' });
  const version = /version ([0-9.]+)/.exec(result.stdout ?? '')?.[1];
  return version === undefined ? 'haproxy' : `haproxy/${version}`;
}

/**
 * The configuration, as an HAProxy user writes a reverse proxy: the client
 * address in X-Forwarded-For (option forwardfor) and X-Real-IP, the scheme
 * and the Host in X-Forwarded-Proto/-Host, what nginx's config and
 * miwidothttp send too. maxconn matches nginx's worker_connections.
 */
export function haproxyConfig(options: { port: number; upstreamPort: number; pidFile: string }): string {
  return `global
	nbthread 2
	maxconn 4096
	pidfile ${options.pidFile}

defaults
	mode http
	timeout connect 5s
	timeout client 65s
	timeout server 65s
	timeout http-keep-alive 65s
	option forwardfor

frontend bench
	bind 127.0.0.1:${options.port}
	default_backend upstream

backend upstream
	http-request set-header X-Real-IP %[src]
	http-request set-header X-Forwarded-Proto http
	http-request set-header X-Forwarded-Host %[req.hdr(host)]
	server upstream 127.0.0.1:${options.upstreamPort}
`;
}
