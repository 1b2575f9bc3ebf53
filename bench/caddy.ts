/**
 * Caddy for the benchmark (Debian's caddy 2.6): the same 1 KiB file, the
 * same reverse proxy to the shared upstream, the same certificate, written
 * as a Caddy user writes a Caddyfile. Caddy is one process; GOMAXPROCS=2
 * gives it the two threads the other servers get as two workers.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's path; BENCH_CADDY overrides it, and BENCH_CADDY=off runs without Caddy. */
export const CADDY_BINARY = process.env.BENCH_CADDY || '/usr/bin/caddy';

/** `caddy version`, or null when Caddy is not installed. */
export function caddyVersion(): string | null {
  if (CADDY_BINARY === 'off' || !existsSync(CADDY_BINARY)) return null;
  const result = spawnSync(CADDY_BINARY, ['version'], { encoding: 'utf8' });
  const version = /v?[0-9]+\.[0-9]+\.[0-9]+/.exec(result.stdout ?? '')?.[0];
  return version === undefined ? 'caddy' : `caddy/${version.replace(/^v/, '')}`;
}

export interface CaddyOptions {
  readonly port: number;
  readonly root: string;
  readonly upstreamPort: number;
  readonly tls: { readonly port: number; readonly certFile: string; readonly keyFile: string } | null;
}

/**
 * The Caddyfile. Caddy writes no access log unless a site asks for one
 * (`log`); its own log is set to errors only, as nginx's error_log is at
 * warn. HTTP/3 is left out (`protocols h1 h2`): nginx 1.22 has none, and
 * it would open a UDP listener nothing measures. reverse_proxy keeps its
 * upstream connections alive by default, sends the client's Host as it came
 * and sets X-Forwarded-For/-Proto/-Host itself; X-Real-IP is added as
 * nginx's config and miwidothttp do; `encode zstd gzip` compresses its
 * answers for clients that accept it, as the Caddyfile documentation shows
 * it (Caddy 2.6 has no brotli encoder). Automatic HTTPS is off: the benchmark
 * certificate is given with `tls`, and no redirect listener is wanted.
 * wrk connects to 127.0.0.1 and sends that as its SNI: Caddy picks a
 * certificate by SNI (nginx, Node and miwidothttp serve their default one),
 * so the HTTPS site names the address too, and default_sni covers clients
 * that send none.
 */
export function caddyfile(options: CaddyOptions): string {
  const { port, root, upstreamPort, tls } = options;
  return `{
	admin off
	auto_https off
	default_sni static.test
	log {
		level ERROR
	}
	servers {
		protocols h1 h2
	}
}

http://static.test:${port} {
	bind 127.0.0.1
	root * ${root}
	file_server
}

http://proxy.test:${port} {
	bind 127.0.0.1
	encode zstd gzip
	reverse_proxy 127.0.0.1:${upstreamPort} {
		header_up X-Real-IP {remote_host}
	}
}
${
  tls === null
    ? ''
    : `
https://static.test:${tls.port}, https://127.0.0.1:${tls.port} {
	bind 127.0.0.1
	tls ${tls.certFile} ${tls.keyFile}
	root * ${root}
	file_server
}
`
}`;
}

/** Caddy's environment: two threads, and its state (autosave.json, certificate storage) kept in `dir`. */
export function caddyEnvironment(dir: string): NodeJS.ProcessEnv {
  return { ...process.env, GOMAXPROCS: '2', XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir };
}
