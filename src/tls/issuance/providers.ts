/**
 * The issuer [ssl] asks for: ACME (with its DNS-01 provider, when one is
 * configured) or Cloudflare Origin CA. Loaded by index.ts at the first
 * issuance: acme-client (with axios and node-forge) is not loaded by a
 * master that never issues.
 */
import type { Logger } from 'pino';
import type { IssuanceSpec } from '../../config/types.js';
import { createAcmeIssuer } from './acme.js';
import type { OriginCaValidityDays } from './cloudflare-api.js';
import { createCloudflareOriginIssuer } from './cloudflare-origin.js';
import { createCloudflareDns, createExecDns } from './dns.js';
import type { ChallengeBoard, DnsProvider, Issuer } from './types.js';

export function createProviderIssuer(spec: IssuanceSpec, board: ChallengeBoard, log: Logger): Issuer {
  const keyType = spec.keyType === 'rsa' ? 'rsa-2048' : 'ecdsa-p256';
  if (spec.cloudflare !== null) {
    const { apiUrl, token, validityDays } = spec.cloudflare;
    return createCloudflareOriginIssuer({
      apiToken: token,
      apiBaseUrl: apiUrl,
      keyType,
      validityDays: validityDays as OriginCaValidityDays,
      log,
    });
  }
  const acme = spec.acme;
  if (acme === null) throw new Error('[ssl] provider has neither ACME nor Cloudflare settings');
  let dns: DnsProvider | null = null;
  if (acme.dns?.provider === 'cloudflare')
    dns = createCloudflareDns({ apiToken: acme.dns.token, zoneId: acme.dns.zoneId, apiBaseUrl: acme.dns.apiUrl, log });
  else if (acme.dns?.provider === 'exec') dns = createExecDns({ command: acme.dns.command, credentials: acme.dns.credentials, log });
  return createAcmeIssuer({
    directoryUrl: acme.directoryUrl,
    email: acme.email,
    agreeTos: acme.agreeTos,
    accountDir: spec.certDir,
    challenges: acme.preferred,
    board,
    dns,
    log,
    keyType,
    dnsPropagationDelayMs: acme.dnsPropagationDelayMs,
  });
}
