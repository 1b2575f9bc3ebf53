/** nginx configurations for the benchmark: the reference server and the upstream. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's path; BENCH_NGINX overrides it, and BENCH_NGINX=off runs without nginx. */
export const NGINX_BINARY = process.env.BENCH_NGINX || '/usr/sbin/nginx';

/** `nginx -v` (printed on stderr), or null when nginx is not installed. */
export function nginxVersion(): string | null {
  if (NGINX_BINARY === 'off' || !existsSync(NGINX_BINARY)) return null;
  const result = spawnSync(NGINX_BINARY, ['-v'], { encoding: 'utf8' });
  return /nginx\/\S+/.exec(`${result.stderr}${result.stdout}`)?.[0] ?? 'nginx';
}

interface Common {
  /** nginx's prefix (-p): pid, logs and temp directories live under it. */
  readonly prefix: string;
  readonly workerProcesses: number;
}

function preamble({ prefix, workerProcesses }: Common, name: string): string {
  // As root, nginx would switch workers to "nobody"; the benchmark's other
  // servers run as root too, and the temp dir is root's, so stay root.
  const user = process.getuid?.() === 0 ? 'user root root;\n' : '';
  return `${user}worker_processes ${workerProcesses};
daemon off;
master_process on;
pid ${prefix}/${name}.pid;
error_log ${prefix}/${name}-error.log warn;
events { worker_connections 4096; }
`;
}

function httpCommon(prefix: string, name: string): string {
  return `  types { text/html html; application/octet-stream bin; }
  default_type application/octet-stream;
  access_log off;
  server_tokens off;
  client_body_temp_path ${prefix}/${name}-tmp-body;
  proxy_temp_path ${prefix}/${name}-tmp-proxy;
  fastcgi_temp_path ${prefix}/${name}-tmp-fastcgi;
  uwsgi_temp_path ${prefix}/${name}-tmp-uwsgi;
  scgi_temp_path ${prefix}/${name}-tmp-scgi;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  # h2load never reconnects after a GOAWAY; every server gets 100,000 (see bench/servers.ts).
  keepalive_requests 100000;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_min_uses 1;
  open_file_cache_errors on;
`;
}

/** nginx's HTTPS listener: the benchmark's certificate on its own port. */
export interface ReferenceTls {
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * static.test over HTTPS (HTTP/1.1 and HTTP/2, by ALPN), configured as
 * Mozilla's nginx generator writes the "intermediate" profile (https://ssl-config.mozilla.org, guideline 5.7),
 * the configuration most production nginx servers copy: TLS 1.2 and 1.3,
 * ECDHE with AEAD suites, X25519/P-256/P-384, the client's suite preference,
 * a shared session cache and no session tickets. Left out: the DHE suites
 * (they need a dhparam file, and miwidothttp offers none), OCSP stapling (a
 * self-signed certificate has no responder) and HSTS (a header, not TLS work).
 * TLS 1.3 suites are OpenSSL's defaults, which nginx does not change.
 */
function tlsServer(tls: ReferenceTls, root: string): string {
  return `
  server {
    listen 127.0.0.1:${tls.port} ssl http2 reuseport;
    server_name static.test;
    root ${root};
    ssl_certificate ${tls.certFile};
    ssl_certificate_key ${tls.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_timeout 1d;
    ssl_session_cache shared:MozSSL:10m;
    ssl_session_tickets off;
    location / { }
  }
`;
}

/**
 * The reference: static.test from `root`, proxy.test to the upstream over
 * kept-alive connections (gzip on, for clients that accept it), and
 * static.test over HTTPS when `tls` is given.
 */
export function referenceConfig(options: Common & { port: number; root: string; upstreamPort: number; tls?: ReferenceTls }): string {
  const { prefix, port, root, upstreamPort } = options;
  return `${preamble(options, 'nginx')}http {
${httpCommon(prefix, 'nginx')}
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 32;
  }

  server {
    # reuseport: one listening socket per worker, so the kernel spreads wrk's
    # connections evenly; without it one worker often takes all 50 at once
    # (nginx's default accept with EPOLLEXCLUSIVE), which measures luck.
    listen 127.0.0.1:${port} reuseport;
    server_name static.test;
    root ${root};
    location / { }
  }

  server {
    listen 127.0.0.1:${port};
    server_name proxy.test;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # What miwidothttp's proxy sends too (src/worker/handlers/forwarding.ts), so both do the same work.
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
    # Compression as nginx's users turn it on (miwidothttp compresses proxied
    # text by default): gzip at nginx's default level (gzip_comp_level 1);
    # text/html is always among gzip_types. gzip_proxied any: also when the
    # request came through another proxy (a Via header). Debian's nginx has
    # no brotli or zstd module.
    gzip on;
    gzip_types text/plain text/css text/xml application/json application/javascript application/xml image/svg+xml;
    gzip_proxied any;
    gzip_vary on;
  }
${options.tls === undefined ? '' : tlsServer(options.tls, root)}}
`;
}

/** The upstream both proxies talk to: one worker serving `root` for any Host. */
export function upstreamConfig(options: Common & { port: number; root: string }): string {
  const { prefix, port, root } = options;
  return `${preamble(options, 'upstream')}http {
${httpCommon(prefix, 'upstream')}
  server {
    listen 127.0.0.1:${port} default_server;
    root ${root};
    location / { }
  }
}
`;
}
