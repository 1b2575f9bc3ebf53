/**
 * [ssl] and the TLS keys of [security] -> TlsSpec and IssuanceSpec: manual
 * certificates by path, the provider that obtains the others (ACME or
 * Cloudflare's Origin CA) with its challenges and credentials. Pure, like
 * compile.ts: whatever needs the host (the files, cert_dir's owner, the DNS
 * program's mode) is the preflight's (preflight/tls.ts).
 */
import type { ConfigProblem } from './problem.js';
import type { RawConfig } from './schema.js';
import type { IssuanceSpec, TlsSpec } from './types.js';
import { validateCiphers } from '../tls/policy.js';
import { parseDnsName } from '../tls/sni.js';
import { checkApiBase, isWellFormedToken } from '../tls/issuance/cloudflare-api.js';
import { httpPortsOf, httpsPortOf, httpsPortsOf } from './listen.js';

/** Where an ACME CA fetches HTTP-01 answers (RFC 8555 §8.3). */
const ACME_HTTP01_PATH = '/.well-known/acme-challenge';

/**
 * [ssl]: manual certificates ([ssl.domains."name"]) and/or a provider that
 * obtains the others (provider = "acme" or "cloudflare").
 *
 * The compiled config carries paths, never key material. The files are read
 * by the preflight (preflight/tls.ts), so `check` names the domain whose file
 * is missing, whose key does not match or whose certificate has expired, and
 * again by the master at each start and reload.
 */
export function compileTls(
  raw: RawConfig,
  resolvePath: (file: string) => string,
  problems: ConfigProblem[],
): { tls: TlsSpec | null; issuance: IssuanceSpec | null } {
  const security = raw.security;
  const ssl = raw.ssl;
  if (ssl === undefined) {
    if (security.enforce_https) problems.push({ key: 'security.enforce_https', message: 'needs [ssl] certificates to redirect to' });
    return { tls: null, issuance: null };
  }
  const provider = ssl.provider === 'acme' || ssl.provider === 'cloudflare' ? ssl.provider : null;
  const manual = ssl.domains !== undefined && !Array.isArray(ssl.domains) ? ssl.domains : {};
  if (provider === null && Array.isArray(ssl.domains)) {
    problems.push({
      key: 'ssl.domains',
      message:
        'a list of names is obtained from ssl.provider ("acme" or "cloudflare"); manual certificates are [ssl.domains."name"] tables',
    });
  } else if (provider === null && Object.keys(manual).length === 0) {
    problems.push({
      key: 'ssl.domains',
      message: 'name at least one certificate: [ssl.domains."example.com"] with cert_file and key_file, or set ssl.provider',
    });
  }
  const certificates = Object.entries(manual).map(([name, files]) => ({
    name,
    certFile: resolvePath(files.cert_file),
    keyFile: resolvePath(files.key_file),
    ...(files.chain_file !== undefined && { chainFile: resolvePath(files.chain_file) }),
  }));
  if (security.ciphers !== undefined) {
    for (const problem of validateCiphers(security.ciphers, security.min_tls_version))
      problems.push({ key: 'security.ciphers', message: problem });
  }
  // With listen / listen_tls, the listener overlap check (listen.ts) names a port used twice.
  if (raw.server.listen === undefined && raw.server.listen_tls === undefined && raw.server.https_port === raw.server.http_port)
    problems.push({ key: 'server.https_port', message: 'must differ from server.http_port' });
  const issuance =
    provider === null
      ? null
      : compileIssuance(raw, provider, new Set(certificates.map(({ name }) => name.toLowerCase())), resolvePath, problems);
  const tls: TlsSpec = {
    certificates,
    minVersion: security.min_tls_version,
    ciphers: security.ciphers ?? null,
    enforceHttps: security.enforce_https,
    httpsPort: httpsPortOf(raw),
    handshakeTimeoutMs: (security.timeouts.header_read_timeout ?? security.timeouts.header_timeout ?? 10) * 1000,
    acmeChallengePath: ssl.challenges.http_01_path.replace(/\/+$/, ''),
    answersAcmeChallenges: provider === 'acme',
  };
  return { tls, issuance };
}

/**
 * The provider's part of [ssl]: which names, and everything needed to
 * obtain them. Credentials come from the config, where they are "${VAR}"
 * references to the environment.
 */
function compileIssuance(
  raw: RawConfig,
  provider: 'acme' | 'cloudflare',
  manualNames: ReadonlySet<string>,
  resolvePath: (file: string) => string,
  problems: ConfigProblem[],
): IssuanceSpec {
  const ssl = raw.ssl!;
  const challenges = ssl.challenges;
  const listed = Array.isArray(ssl.domains);
  const candidates = listed ? (ssl.domains as string[]) : raw.vhosts.flatMap((vhost) => vhost.domains).filter((name) => name !== '*');
  const names: string[] = [];
  for (const [i, candidate] of candidates.entries()) {
    const name = parseDnsName(candidate, true);
    if (name === null) {
      if (listed)
        problems.push({
          key: `ssl.domains[${i}]`,
          message: `${JSON.stringify(candidate)} is not a host name a certificate can be issued for`,
        });
      continue;
    }
    if (!manualNames.has(name) && !names.includes(name)) names.push(name);
  }
  if (names.length === 0) {
    problems.push({
      key: 'ssl.domains',
      message: `no names to obtain from ${provider}: list them in ssl.domains or give a vhost a domain other than "*"`,
    });
  }
  const cloudflareApi = (key: string, token: string | undefined, missing: string): void => {
    if (token === undefined) problems.push({ key, message: missing });
    else if (!isWellFormedToken(token))
      problems.push({ key, message: 'is empty or has characters a token cannot have (a space from the environment?)' });
    try {
      checkApiBase(ssl.cloudflare_api_url);
    } catch (error) {
      problems.push({ key: 'ssl.cloudflare_api_url', message: (error as Error).message });
    }
  };
  if (provider === 'cloudflare') {
    cloudflareApi('ssl.api_token', ssl.api_token, 'Cloudflare Origin CA needs an API token: api_token = "${CLOUDFLARE_API_TOKEN}"');
    return {
      ...issuanceCommon(raw, names, resolvePath),
      provider,
      acme: null,
      cloudflare: { apiUrl: ssl.cloudflare_api_url.replace(/\/+$/, ''), token: ssl.api_token ?? '', validityDays: ssl.requested_validity },
    };
  }
  if (!ssl.agree_tos)
    problems.push({
      key: 'ssl.agree_tos',
      message: "set to true to accept the ACME server's terms of service (an account cannot be made otherwise)",
    });
  if (new URL(ssl.acme_server).protocol !== 'https:')
    problems.push({ key: 'ssl.acme_server', message: 'must be an https URL (RFC 8555 §6.1)' });
  const preferred = [...new Set(challenges.preferred)];
  if (preferred.includes('http-01') && challenges.http_01_path.replace(/\/+$/, '') !== ACME_HTTP01_PATH) {
    problems.push({ key: 'ssl.challenges.http_01_path', message: `must be ${ACME_HTTP01_PATH}: the CA asks there (RFC 8555 §8.3)` });
  }
  // Unset: the listener that answers them. Set: it must be one of that listener's ports.
  const httpPorts = httpPortsOf(raw);
  if (preferred.includes('http-01') && challenges.http_01_port !== undefined && !httpPorts.includes(challenges.http_01_port)) {
    const where =
      raw.server.listen === undefined ? `server.http_port (${raw.server.http_port})` : `a port of server.listen (${httpPorts.join(', ')})`;
    problems.push({
      key: 'ssl.challenges.http_01_port',
      message: `must be ${where}: HTTP-01 challenges are answered by the HTTP listener`,
    });
  }
  const httpsPorts = httpsPortsOf(raw);
  if (preferred.includes('tls-alpn-01') && challenges.tls_alpn_01_port !== undefined && !httpsPorts.includes(challenges.tls_alpn_01_port)) {
    const where =
      raw.server.listen_tls === undefined
        ? `server.https_port (${raw.server.https_port})`
        : `a port of server.listen_tls (${httpsPorts.join(', ')})`;
    problems.push({
      key: 'ssl.challenges.tls_alpn_01_port',
      message: `must be ${where}: TLS-ALPN-01 challenges are answered by the HTTPS listener`,
    });
  }
  let dns: NonNullable<IssuanceSpec['acme']>['dns'] = null;
  switch (challenges.dns_01_provider) {
    case undefined:
      break;
    case 'cloudflare':
      cloudflareApi(
        'ssl.challenges.dns_01_credentials',
        challenges.dns_01_credentials,
        'the Cloudflare DNS provider needs an API token: dns_01_credentials = "${CLOUDFLARE_DNS_TOKEN}"',
      );
      dns = {
        provider: 'cloudflare',
        apiUrl: ssl.cloudflare_api_url.replace(/\/+$/, ''),
        token: challenges.dns_01_credentials ?? '',
        zoneId: ssl.zone_id ?? null,
      };
      break;
    case 'exec':
      if (challenges.dns_01_command === undefined)
        problems.push({
          key: 'ssl.challenges.dns_01_command',
          message: 'the exec DNS provider needs the command that sets and clears TXT records',
        });
      dns = { provider: 'exec', command: challenges.dns_01_command ?? '', credentials: challenges.dns_01_credentials ?? null };
      break;
    default:
      problems.push({
        key: 'ssl.challenges.dns_01_provider',
        message: `${challenges.dns_01_provider} is not implemented in this version; use "cloudflare" or "exec"`,
      });
  }
  if (dns !== null && !preferred.includes('dns-01')) preferred.push('dns-01');
  if (dns === null) {
    const wildcards = names.filter((name) => name.startsWith('*.'));
    if (wildcards.length > 0)
      problems.push({
        key: 'ssl.challenges.dns_01_provider',
        message: `${wildcards.join(', ')} can only be validated by DNS-01: set a DNS provider`,
      });
    if (preferred.every((type) => type === 'dns-01'))
      problems.push({ key: 'ssl.challenges.preferred', message: 'dns-01 needs ssl.challenges.dns_01_provider' });
  }
  return {
    ...issuanceCommon(raw, names, resolvePath),
    provider,
    acme: {
      directoryUrl: ssl.acme_server,
      email: ssl.email ?? null,
      agreeTos: ssl.agree_tos,
      dnsPropagationDelayMs: challenges.dns_01_propagation_delay * 1000,
      preferred: dns === null ? preferred.filter((type) => type !== 'dns-01') : preferred,
      dns,
    },
    cloudflare: null,
  };
}

function issuanceCommon(
  raw: RawConfig,
  names: string[],
  resolvePath: (file: string) => string,
): Pick<IssuanceSpec, 'names' | 'certDir' | 'keyType' | 'autoRenew' | 'renewalDaysBefore'> {
  const ssl = raw.ssl!;
  return {
    names,
    certDir: resolvePath(ssl.cert_dir),
    keyType: ssl.key_type,
    autoRenew: ssl.auto_renew,
    renewalDaysBefore: ssl.renewal_days_before,
  };
}
