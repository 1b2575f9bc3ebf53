/**
 * What the TLS scenarios of `npm run bench` need besides the servers: one
 * certificate for all of them, a wrk that makes full handshakes, proof that
 * it does, and what each server actually negotiates.
 */
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { runCommand } from './procs.js';
import { runWrk } from './wrk.js';

/** The name the certificate is for, and the Host every TLS request carries. */
export const TLS_HOST = 'static.test';

/**
 * ECDSA P-256, the key type Let's Encrypt clients create by default (certbot
 * since 2.0, Caddy, lego): what a site set up today most likely serves.
 * Self-signed, so no intermediate goes over the wire; every server sends the
 * same single certificate, so the bytes per handshake are equal.
 */
export const KEY_DESCRIPTION = 'ECDSA P-256 (prime256v1), self-signed, no chain';

export interface BenchCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: Buffer;
}

/**
 * A certificate and key for TLS_HOST in `dir`, made with the openssl command
 * (node:crypto makes keys but not certificates). The key is 0600: the
 * miwidothttp master reads it as root; the workers get the material over IPC.
 */
export async function makeCertificate(dir: string): Promise<BenchCertificate> {
  const certFile = path.join(dir, `${TLS_HOST}.crt`);
  const keyFile = path.join(dir, `${TLS_HOST}.key`);
  const made = await runCommand(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      `/CN=${TLS_HOST}`,
      '-addext',
      `subjectAltName=DNS:${TLS_HOST}`,
    ],
    15_000,
  );
  if (made.code !== 0 || !existsSync(certFile) || !existsSync(keyFile)) {
    throw new Error(`openssl could not make the benchmark certificate (exit ${made.code}): ${made.output.trim()}`);
  }
  chmodSync(keyFile, 0o600);
  chmodSync(certFile, 0o644);
  return { certFile, keyFile, certPem: readFileSync(certFile) };
}

/** Compile the wrk shim (bench/wrk-full-handshake.c) into `dir`; the path of the library. */
export async function buildFullHandshakeShim(source: string, dir: string): Promise<string> {
  const library = path.join(dir, 'wrk-full-handshake.so');
  const built = await runCommand('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', library, source, '-ldl'], 30_000);
  if (built.code !== 0) throw new Error(`cc could not build ${source} (exit ${built.code}): ${built.output.trim()}`);
  return library;
}

export interface HandshakeCount {
  readonly full: number;
  readonly resumed: number;
}

/**
 * Handshakes wrk makes with `Connection: close` against a Node TLS server
 * in this process that issues session tickets (TLS 1.3, Node's defaults),
 * counted full and resumed: once as wrk comes, once with `env` (the shim).
 */
export async function countResumptions(
  certificate: BenchCertificate,
  keyPem: Buffer,
  env: NodeJS.ProcessEnv,
): Promise<{ plain: HandshakeCount; shimmed: HandshakeCount }> {
  let full = 0;
  let resumed = 0;
  const server = tls.createServer({ key: keyPem, cert: certificate.certPem }, (socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => (socket.isSessionReused() ? (resumed += 1) : (full += 1)));
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as import('node:net').AddressInfo;
  const load = {
    url: `https://127.0.0.1:${port}/`,
    host: TLS_HOST,
    threads: 1,
    connections: 4,
    durationSeconds: 1,
    headers: ['Connection: close'],
  };
  try {
    await runWrk(load);
    const plain = { full, resumed };
    full = 0;
    resumed = 0;
    await runWrk({ ...load, env });
    return { plain, shimmed: { full, resumed } };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

export interface Negotiated {
  readonly protocol: string;
  readonly cipher: string;
  readonly keyExchange: string;
  readonly signature: string;
}

/**
 * What the openssl command (the library wrk is linked with on Debian)
 * negotiates with `port`, from `s_client -brief`: the same protocol, suite,
 * group and signature on every server, or the comparison is not like for like.
 */
export async function negotiated(port: number): Promise<Negotiated | string> {
  const result = await runCommand('openssl', ['s_client', '-brief', '-connect', `127.0.0.1:${port}`], 10_000, 'Q\n');
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(result.output)?.[1]?.trim();
  const protocol = field('Protocol version');
  const cipher = field('Ciphersuite');
  if (protocol === undefined || cipher === undefined)
    return `openssl s_client failed: ${result.output.trim().split('\n').slice(-3).join(' / ')}`;
  return {
    protocol,
    cipher,
    keyExchange: field('Server Temp Key') ?? field('Negotiated TLS1.3 group') ?? 'unknown',
    signature: field('Signature type') ?? field('Peer signature type') ?? 'unknown',
  };
}

export interface TlsSetup {
  readonly certificate: BenchCertificate;
  /** wrk's environment for full handshakes (the shim preloaded); null when that could not be arranged. */
  readonly fullHandshakeEnv: NodeJS.ProcessEnv | null;
  /** Why the handshake scenario cannot run, or null. */
  readonly handshakeProblem: string | null;
  /** Handshakes counted with wrk as it comes and with the shim; null when the shim did not build. */
  readonly resumption: { plain: HandshakeCount; shimmed: HandshakeCount } | null;
}

export function describeHandshakes(count: HandshakeCount | undefined): string {
  return count === undefined ? 'n/a' : `${count.resumed} of ${count.full + count.resumed} handshakes`;
}

export function describeNegotiated(result: Negotiated | string): string {
  return typeof result === 'string'
    ? result
    : `${result.protocol} ${result.cipher}, key exchange ${result.keyExchange}, signature ${result.signature}`;
}

/**
 * The certificate, and a wrk that makes full handshakes only, checked
 * against a server that resumes: a string when there is no certificate (no
 * HTTPS scenario then), `handshakeProblem` when only full handshakes cannot
 * be measured.
 */
export async function prepareTls(dir: string, shimSource: string): Promise<TlsSetup | string> {
  chmodSync(dir, 0o700);
  let certificate: BenchCertificate;
  try {
    certificate = await makeCertificate(dir);
  } catch (error) {
    return (error as Error).message;
  }
  try {
    const shim = await buildFullHandshakeShim(shimSource, dir);
    const env = {
      ...process.env,
      LD_PRELOAD: [shim, process.env.LD_PRELOAD].filter((entry) => entry !== undefined && entry !== '').join(' '),
    };
    const resumption = await countResumptions(certificate, readFileSync(certificate.keyFile), env);
    const { shimmed } = resumption;
    if (shimmed.resumed > 0 || shimmed.full === 0) {
      return {
        certificate,
        fullHandshakeEnv: null,
        handshakeProblem: `wrk with the shim still resumed ${describeHandshakes(shimmed)}`,
        resumption,
      };
    }
    return { certificate, fullHandshakeEnv: env, handshakeProblem: null, resumption };
  } catch (error) {
    return { certificate, fullHandshakeEnv: null, handshakeProblem: (error as Error).message, resumption: null };
  }
}
