/**
 * TLS protocol policy: versions, cipher suites, key-exchange groups.
 *
 * The default follows Mozilla's "intermediate" server-side TLS guideline
 * (https://wiki.mozilla.org/Security/Server_Side_TLS, v5.7) without its
 * finite-field DHE suites: for TLS 1.2 only ECDHE key exchange with an AEAD
 * cipher (AES-GCM, ChaCha20-Poly1305), and the three TLS 1.3 suites always.
 *
 * The config's `ciphers` may use IANA names (as config/production.toml
 * does) or OpenSSL names. Only names from the closed table below are
 * accepted, so OpenSSL cipher-string syntax ("HIGH", "!aNULL", "A:B") can
 * never widen the set.
 */

/** The `[security] min_tls_version` values. */
export type MinTlsVersion = '1.2' | '1.3';

/** Options for `tls.createSecureContext` / `tls.createServer`. */
export interface TlsPolicy {
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** TLS 1.3 suites and TLS 1.2 ciphers in one list; Node routes "TLS_*" names to TLS 1.3. */
  readonly ciphers: string;
  readonly ecdhCurve: string;
  readonly honorCipherOrder: boolean;
  readonly sigalgs?: string;
}

interface CipherSuite {
  readonly iana: string;
  readonly openssl: string;
  readonly tls13: boolean;
}

/** Every suite we will ever offer, in Mozilla's preference order. */
const SUITES: readonly CipherSuite[] = [
  { iana: 'TLS_AES_128_GCM_SHA256', openssl: 'TLS_AES_128_GCM_SHA256', tls13: true },
  { iana: 'TLS_AES_256_GCM_SHA384', openssl: 'TLS_AES_256_GCM_SHA384', tls13: true },
  { iana: 'TLS_CHACHA20_POLY1305_SHA256', openssl: 'TLS_CHACHA20_POLY1305_SHA256', tls13: true },
  { iana: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', openssl: 'ECDHE-ECDSA-AES128-GCM-SHA256', tls13: false },
  { iana: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', openssl: 'ECDHE-RSA-AES128-GCM-SHA256', tls13: false },
  { iana: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', openssl: 'ECDHE-ECDSA-AES256-GCM-SHA384', tls13: false },
  { iana: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', openssl: 'ECDHE-RSA-AES256-GCM-SHA384', tls13: false },
  { iana: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', openssl: 'ECDHE-ECDSA-CHACHA20-POLY1305', tls13: false },
  { iana: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', openssl: 'ECDHE-RSA-CHACHA20-POLY1305', tls13: false },
];

/** Upper-cased IANA and OpenSSL spellings, both pointing at the suite. */
const SUITE_BY_NAME: ReadonlyMap<string, CipherSuite> = new Map(
  SUITES.flatMap((suite) => [
    [suite.iana, suite],
    [suite.openssl, suite],
  ]),
);

const TLS13_SUITES = SUITES.filter((suite) => suite.tls13);

/**
 * X25519 first (fast, constant-time by construction), then the NIST curves
 * older clients need. Mozilla intermediate lists the same three groups.
 */
const ECDH_CURVES = 'X25519:P-256:P-384';

/** Why a name outside the table is refused, tested in order; the first hit explains it. */
const REFUSAL_REASONS: readonly [pattern: RegExp, reason: string][] = [
  [/NULL/, 'it does not encrypt'],
  [/EXP(ORT)?[-_]|EXPORT/, 'export-grade ciphers are breakable (FREAK, Logjam)'],
  [/ANON|^ADH|^AECDH/, 'anonymous key exchange does not authenticate the server'],
  [/RC4/, 'RC4 is broken (RFC 7465)'],
  [/3DES|DES-CBC3|DES_CBC|(^|[-_])DES($|[-_])/, '3DES/DES has 64-bit blocks (Sweet32)'],
  // OpenSSL spells CBC suites without "CBC" (ECDHE-RSA-AES128-SHA256): a block cipher without GCM/CCM is CBC.
  [
    /^(?!.*(GCM|CCM|CHACHA20|POLY1305)).*(AES|CAMELLIA|ARIA|SEED|IDEA|CBC)|MD5/,
    'CBC mode with HMAC is not AEAD (Lucky13, padding oracles)',
  ],
  [/^TLS_RSA_|^(AES|CAMELLIA|ARIA|SEED|IDEA)/, 'static RSA key exchange has no forward secrecy'],
  [/^(TLS_)?DHE[-_]/, 'finite-field DHE is not offered (use ECDHE)'],
];

/** Thrown by `tlsPolicy` for a refused cipher list; `problems` has one line per cause. */
export class TlsPolicyError extends Error {
  readonly code = 'ERR_TLS_POLICY';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'TlsPolicyError';
    this.problems = problems;
  }
}

function refusal(name: string): string {
  const upper = name.toUpperCase();
  const reason = REFUSAL_REASONS.find(([pattern]) => pattern.test(upper))?.[1];
  return reason === undefined
    ? `cipher ${JSON.stringify(name)} is not supported; use ECDHE or TLS 1.3 suites with AES-GCM or ChaCha20-Poly1305`
    : `cipher ${JSON.stringify(name)} is refused: ${reason}`;
}

/**
 * Checks a configured cipher list and returns one problem per bad name (for
 * `check`), or an empty array. Refused: names not in the AEAD table (CBC,
 * RC4, 3DES, NULL, EXPORT, anonymous, static RSA, DHE, or unknown), an empty
 * list, and — when `minVersion` is '1.2' — a list with no TLS 1.2 suite,
 * which would silently turn TLS 1.2 off.
 */
export function validateCiphers(names: readonly string[], minVersion?: MinTlsVersion): string[] {
  if (names.length === 0) return ['ciphers is empty; omit it to use the default list'];
  const problems: string[] = [];
  for (const name of names) {
    if (!SUITE_BY_NAME.has(name.toUpperCase())) problems.push(refusal(name));
  }
  if (problems.length === 0 && minVersion === '1.2' && names.every((name) => SUITE_BY_NAME.get(name.toUpperCase())?.tls13)) {
    problems.push('ciphers lists only TLS 1.3 suites although min_tls_version is "1.2"; add TLS 1.2 suites or set it to "1.3"');
  }
  return problems;
}

/**
 * Builds the secure-context options for `min_tls_version` and the configured
 * `ciphers` (IANA or OpenSSL names; undefined for the default list).
 *
 * The three TLS 1.3 suites are always enabled: Node disables TLS 1.3
 * entirely when the list names none, and all three are AEAD. Configured
 * TLS 1.3 names come first in the given order, the rest follow.
 *
 * `honorCipherOrder` is false, as Mozilla recommends once every offered
 * suite is strong: the client then picks, so phones without AES hardware
 * choose ChaCha20 and the rest AES-GCM. `sigalgs` is left to OpenSSL, whose
 * defaults already exclude SHA-1 and MD5 at TLS 1.2+.
 *
 * @throws TlsPolicyError naming each refused cipher (see `validateCiphers`).
 */
export function tlsPolicy(minVersion: MinTlsVersion, ciphers: readonly string[] | undefined): TlsPolicy {
  let chosen: readonly CipherSuite[];
  if (ciphers === undefined) {
    chosen = SUITES;
  } else {
    const problems = validateCiphers(ciphers, minVersion);
    if (problems.length > 0) throw new TlsPolicyError(problems);
    const configured = ciphers.map((name) => SUITE_BY_NAME.get(name.toUpperCase()) as CipherSuite);
    chosen = [...configured.filter((suite) => suite.tls13), ...TLS13_SUITES, ...configured.filter((suite) => !suite.tls13)];
  }
  const names = [...new Set(chosen.map((suite) => suite.openssl))];
  return Object.freeze({
    minVersion: minVersion === '1.3' ? 'TLSv1.3' : 'TLSv1.2',
    ciphers: names.join(':'),
    ecdhCurve: ECDH_CURVES,
    honorCipherOrder: false,
  });
}
