/**
 * The files of the upstream TLS settings (ca_file, client_cert_file,
 * client_key_file): read and checked by the master (as root) when it loads
 * a config, so that `check` names a missing file, a CA file without a
 * certificate or a key that does not match its certificate, and workers get
 * the PEM in their config instead of a path they could not (and must not)
 * open: a client key is root's, and a worker is jailed without it.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConfigProblem } from './problem.js';
import { type CompiledConfig, mapProxyBackends, proxyBackends, type UpstreamTlsSpec } from './types.js';

/** A CA bundle or certificate larger than this is not one (the system bundle is ~220 KiB). */
const MAX_PEM_BYTES = 4 * 1024 * 1024;

type Pem = NonNullable<UpstreamTlsSpec['pem']>;

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readPem(file: string): { ok: true; text: string } | { ok: false; message: string } {
  try {
    const bytes = readFileSync(file);
    if (bytes.length > MAX_PEM_BYTES) return { ok: false, message: `${file} is larger than ${MAX_PEM_BYTES} bytes: not a PEM file` };
    return { ok: true, text: bytes.toString('utf8') };
  } catch (error) {
    return { ok: false, message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
  }
}

/** Every certificate of a PEM text, or the reason there is none. */
function certificates(text: string, file: string): { ok: true; list: X509Certificate[] } | { ok: false; message: string } {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) return { ok: false, message: `${file} holds no PEM certificate` };
  try {
    return { ok: true, list: blocks.map((block) => new X509Certificate(block)) };
  } catch (error) {
    return { ok: false, message: `${file}: a certificate cannot be parsed (${(error as Error).message})` };
  }
}

/** The PEM of `spec`'s files, or its problems keyed below `key` ("vhosts[0].backend"). */
export function readUpstreamTls(spec: UpstreamTlsSpec, key: string): { ok: true; pem: Pem } | { ok: false; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const pem: { ca: string | null; cert: string | null; key: string | null } = { ca: null, cert: null, key: null };
  if (spec.caFile !== null) {
    const read = readPem(spec.caFile);
    const parsed = read.ok ? certificates(read.text, spec.caFile) : read;
    if (!parsed.ok) problems.push({ key: `${key}.ca_file`, message: parsed.message });
    else if (read.ok) pem.ca = read.text;
  }
  if (spec.clientCertFile !== null && spec.clientKeyFile !== null) {
    const certRead = readPem(spec.clientCertFile);
    const keyRead = readPem(spec.clientKeyFile);
    const parsed = certRead.ok ? certificates(certRead.text, spec.clientCertFile) : certRead;
    if (!parsed.ok) problems.push({ key: `${key}.client_cert_file`, message: parsed.message });
    if (!keyRead.ok) problems.push({ key: `${key}.client_key_file`, message: keyRead.message });
    if (parsed.ok && keyRead.ok && certRead.ok) {
      const leaf = parsed.list[0]!;
      try {
        if (!leaf.checkPrivateKey(createPrivateKey(keyRead.text)))
          problems.push({ key: `${key}.client_key_file`, message: `is not the key of ${spec.clientCertFile}` });
      } catch (error) {
        // Never the key's bytes or the parser's view of them: only that it is not a key.
        problems.push({
          key: `${key}.client_key_file`,
          message: `${spec.clientKeyFile} is not a PEM private key (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`,
        });
      }
      if (Date.parse(leaf.validTo) < Date.now())
        problems.push({ key: `${key}.client_cert_file`, message: `${spec.clientCertFile} expired on ${leaf.validTo}` });
      pem.cert = certRead.text;
      pem.key = keyRead.text;
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, pem };
}

/** Preflight: every upstream TLS file can be read and holds what its key says. */
export function upstreamTlsFiles(config: CompiledConfig): ConfigProblem[] {
  return proxyBackends(config).flatMap(({ key, backend }) => {
    if (backend.tls === null) return [];
    const read = readUpstreamTls(backend.tls, key);
    return read.ok ? [] : read.problems;
  });
}

/** The config with the PEM of every upstream TLS file in place (what workers get), or the problems. */
export function withUpstreamTls(config: CompiledConfig): { ok: true; config: CompiledConfig } | { ok: false; problems: ConfigProblem[] } {
  const backends = proxyBackends(config);
  if (backends.every(({ backend }) => backend.tls === null)) return { ok: true, config };
  const problems: ConfigProblem[] = [];
  const read = new Map<UpstreamTlsSpec, Pem>();
  for (const { key, backend } of backends) {
    if (backend.tls === null) continue;
    const result = readUpstreamTls(backend.tls, key);
    if (result.ok) read.set(backend.tls, result.pem);
    else problems.push(...result.problems);
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    config: mapProxyBackends(config, (backend) =>
      backend.tls === null ? backend : { ...backend, tls: Object.freeze({ ...backend.tls, pem: Object.freeze(read.get(backend.tls)!) }) },
    ),
  };
}
