/**
 * Cloudflare Origin CA ([ssl] provider = "cloudflare"): certificates that
 * Cloudflare's edge trusts for the hop to this origin (browsers do not).
 * The key and CSR are made here; the API only ever sees the CSR:
 *
 *   POST {apiBase}/certificates
 *   Authorization: Bearer <token>
 *   {"hostnames": [...], "requested_validity": <days>,
 *    "request_type": "origin-ecc" | "origin-rsa", "csr": "<PEM>"}
 *
 * and answers, in the API's envelope, `result: {id, certificate, hostnames,
 * expires_on, request_type, requested_validity, csr}`; `certificate` is the
 * leaf alone (the Origin CA root is not sent, and clients never need it).
 */
import type { Logger } from 'pino';
import { CloudflareApi, ORIGIN_CA_DEFAULT_VALIDITY_DAYS, ORIGIN_CA_VALIDITY_DAYS, type OriginCaValidityDays } from './cloudflare-api.js';
import { createKeyAndCsr, issuedCertificate } from './keys.js';
import { IssuanceError, type CertificateKeyType, type IssuedCertificate, type Issuer } from './types.js';

export const ORIGIN_CA_DEFAULTS = {
  keyType: 'ecdsa-p256' as CertificateKeyType,
  validityDays: ORIGIN_CA_DEFAULT_VALIDITY_DAYS,
} as const;

export interface CloudflareOriginIssuerOptions {
  /** An API token with the "SSL and Certificates: Edit" permission, from the environment. */
  readonly apiToken: string;
  readonly apiBaseUrl?: string;
  readonly keyType?: CertificateKeyType;
  readonly validityDays?: OriginCaValidityDays;
  readonly requestTimeoutMs?: number;
  readonly log: Logger;
}

const REQUEST_TYPE: Record<CertificateKeyType, 'origin-ecc' | 'origin-rsa'> = {
  'ecdsa-p256': 'origin-ecc',
  'rsa-2048': 'origin-rsa',
};

/**
 * @throws IssuanceError when the options cannot work (a validity the API does not offer, a malformed token, a non-https API base).
 */
export function createCloudflareOriginIssuer(options: CloudflareOriginIssuerOptions): Issuer {
  const validityDays = options.validityDays ?? ORIGIN_CA_DEFAULTS.validityDays;
  if (!(ORIGIN_CA_VALIDITY_DAYS as readonly number[]).includes(validityDays)) {
    throw new IssuanceError(`Cloudflare Origin CA validity ${validityDays} days is not one of ${ORIGIN_CA_VALIDITY_DAYS.join(', ')}`);
  }
  const keyType = options.keyType ?? ORIGIN_CA_DEFAULTS.keyType;
  const api = new CloudflareApi({
    apiToken: options.apiToken,
    ...(options.apiBaseUrl ? { apiBaseUrl: options.apiBaseUrl } : {}),
    ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
  });
  const log = options.log.child({ component: 'cloudflare-origin-ca' });

  return {
    kind: 'cloudflare',
    async issue(names: readonly string[], signal?: AbortSignal): Promise<IssuedCertificate> {
      const subject = names[0];
      if (subject === undefined) throw new IssuanceError('no name to issue a certificate for');
      const { keyPem, csrPem } = await createKeyAndCsr(names, keyType);
      const result = await api.call(`${subject}: cloudflare origin ca: requesting a certificate`, 'POST', '/certificates', {
        body: { hostnames: [...names], requested_validity: validityDays, request_type: REQUEST_TYPE[keyType], csr: csrPem },
        ...(signal ? { signal } : {}),
      });
      const { id, certificate, expires_on: expiresOn } = (result ?? {}) as { id?: unknown; certificate?: unknown; expires_on?: unknown };
      if (typeof certificate !== 'string') throw new IssuanceError(`${subject}: cloudflare origin ca: the answer has no certificate`);
      const issued = issuedCertificate('the Cloudflare Origin CA', names, certificate, keyPem);
      log.info(
        {
          names,
          certificateId: typeof id === 'string' ? id : null,
          expiresOn: typeof expiresOn === 'string' ? expiresOn : null,
          notAfter: issued.notAfter.toISOString(),
        },
        'certificate issued',
      );
      return issued;
    },
  };
}
