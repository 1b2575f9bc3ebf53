/**
 * Certificates the master obtains and renews ([ssl] provider): one per name,
 * obtained when missing, renewed before expiry, retried with backoff, and
 * handed to the workers without a restart.
 *
 * - Renewal is due `renewal_days_before` expiry, or at one third of the
 *   lifetime before expiry when that is sooner (short-lived certificates).
 * - A failed order keeps the certificate being served; the reason is logged,
 *   audited and shown by `miwidothttp certs`; the next try follows an
 *   exponential backoff with jitter, never later than a third of the time
 *   left to expiry.
 * - One order at a time: a CA's rate limits count per account.
 */
import type { Logger } from 'pino';
import type { IssuanceSpec } from '../config/types.js';
import type { CertificateView } from '../ipc/control.js';
import type { LoadedCertificate } from '../tls/certificates.js';
import { caKey } from '../tls/issuance/account.js';
import { type Issuer, oneLine } from '../tls/issuance/types.js';
import type { AuditLog } from './audit-log.js';
import type { CertificateInfo } from '../tls/certificates.js';
import { ensurePrivateDirectory, loadIssued, saveIssued, type StoreLocation } from './issued-store.js';

const RETRY_BASE_MS = 60_000;
const RETRY_MAX_MS = 6 * 60 * 60 * 1000;
/** Never retry sooner than this, however close expiry is. */
const RETRY_MIN_MS = 5_000;
/** Timers are re-armed at least this often, so a suspended machine or a clock step is caught up. */
const MAX_TIMER_MS = 60 * 60 * 1000;
/** Longest one order may take, all of it (a CA that stops answering must not stop every other renewal). */
const ORDER_TIMEOUT_MS = 15 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * When a certificate valid over [notBefore, notAfter] is due for renewal:
 * `renewalDaysBefore` days before expiry; for a certificate so short-lived
 * that this is more than half its lifetime, a third of its lifetime before.
 */
export function renewalDue(notBefore: Date, notAfter: Date, renewalDaysBefore: number): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const days = renewalDaysBefore * DAY_MS;
  return new Date(notAfter.getTime() - (days <= lifetime / 2 ? days : lifetime / 3));
}

/**
 * Delay before retry `attempt` (1, 2, ...): exponential with ±20 % jitter;
 * while the certificate served is still valid, never later than a third of
 * its time left. Once it has expired the backoff alone applies (a CA limits
 * failed validations per hour).
 */
export function retryDelay(attempt: number, now: number, expiry: Date | null, random = Math.random): number {
  const exponential = Math.min(RETRY_BASE_MS * 2 ** (attempt - 1), RETRY_MAX_MS);
  const jittered = Math.round(exponential * (0.8 + 0.4 * random()));
  const left = expiry === null ? 0 : expiry.getTime() - now;
  return left > 0 ? Math.max(RETRY_MIN_MS, Math.min(jittered, left / 3)) : jittered;
}

/** A spec whose issuer and cert_dir are ready: made before a generation starts, so a problem refuses it. */
export interface PreparedIssuance {
  readonly spec: IssuanceSpec;
  readonly issuer: Issuer;
}

/** What `miwidothttp certs` shows of a name the provider covers. */
export interface IssuedStatus {
  readonly name: string;
  readonly provider: 'acme' | 'cloudflare';
  readonly certificate: LoadedCertificate | null;
  readonly nextRenewal: Date | null;
  readonly lastError: string | null;
}

interface Entry {
  name: string;
  certificate: LoadedCertificate | null;
  due: Date;
  failures: number;
  lastError: string | null;
}

export class CertificateManager {
  #spec: IssuanceSpec | null = null;
  #issuer: Issuer | null = null;
  #entries = new Map<string, Entry>();
  #timer: NodeJS.Timeout | null = null;
  #busy = false;
  #closed = false;
  readonly #abort = new AbortController();

  constructor(
    private readonly log: Logger,
    private readonly audit: AuditLog,
    /** Builds the issuer for a spec (ACME or Cloudflare Origin CA). */
    private readonly makeIssuer: (spec: IssuanceSpec) => Issuer,
    /** A certificate was obtained or renewed: hand the new set to the workers. */
    private readonly changed: () => void,
  ) {}

  /**
   * Makes cert_dir and the issuer for `spec`.
   * @throws Error saying what is wrong (cert_dir not root-only, an issuer option refused).
   */
  prepare(spec: IssuanceSpec): PreparedIssuance {
    try {
      ensurePrivateDirectory(spec.certDir);
    } catch (error) {
      throw new Error(`ssl.cert_dir: ${(error as Error).message}`);
    }
    return { spec, issuer: this.makeIssuer(spec) };
  }

  /** The stored, usable certificates for `spec`'s names (what a new generation starts with). */
  stored(spec: IssuanceSpec | null): LoadedCertificate[] {
    if (spec === null) return [];
    const where = location(spec);
    return spec.names.flatMap((name) => {
      const entry = this.#spec !== null && sameStore(this.#spec, spec) ? this.#entries.get(name) : undefined;
      if (entry?.certificate) return [entry.certificate];
      const loaded = loadIssued(where, name);
      return loaded.ok ? [loaded.certificate] : [];
    });
  }

  /**
   * The serving generation's spec (at start and after each reload): names
   * dropped are forgotten, names added are obtained, the rest keep their
   * certificates and schedule.
   */
  configure(prepared: PreparedIssuance | null): void {
    const previous = this.#spec;
    const spec = prepared?.spec ?? null;
    this.#spec = spec;
    if (prepared === null || spec === null) {
      this.#entries.clear();
      this.#issuer = null;
      this.#arm();
      return;
    }
    const keep = previous !== null && sameStore(previous, spec);
    const entries = new Map<string, Entry>();
    for (const name of spec.names) {
      const known = keep ? this.#entries.get(name) : undefined;
      if (known !== undefined) {
        // A name failing now keeps its backoff: a reload is no reason to ask the CA again at once.
        if (known.certificate !== null && known.failures === 0)
          known.due = renewalDue(known.certificate.notBefore, known.certificate.notAfter, spec.renewalDaysBefore);
        entries.set(name, known);
        continue;
      }
      const loaded = loadIssued(location(spec), name);
      const certificate = loaded.ok ? loaded.certificate : null;
      entries.set(name, {
        name,
        certificate,
        due: certificate === null ? new Date() : renewalDue(certificate.notBefore, certificate.notAfter, spec.renewalDaysBefore),
        failures: 0,
        lastError: null,
      });
    }
    this.#entries = entries;
    this.#issuer = prepared.issuer;
    this.#arm();
  }

  status(): IssuedStatus[] {
    const spec = this.#spec;
    if (spec === null) return [];
    return [...this.#entries.values()].map((entry) => ({
      name: entry.name,
      provider: spec.provider,
      certificate: entry.certificate,
      nextRenewal: spec.autoRenew || entry.certificate === null ? entry.due : null,
      lastError: entry.lastError,
    }));
  }

  close(): void {
    this.#closed = true;
    this.#abort.abort();
    if (this.#timer !== null) clearTimeout(this.#timer);
  }

  /** Sets the timer for the earliest due entry. */
  #arm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#closed || this.#busy) return;
    const due = this.#dueEntries();
    const next =
      due.length > 0
        ? Date.now()
        : Math.min(...[...this.#entries.values()].filter((entry) => this.#renews(entry)).map((entry) => entry.due.getTime()));
    if (!Number.isFinite(next)) return;
    this.#timer = setTimeout(() => void this.#run(), Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS));
    this.#timer.unref();
  }

  /** A missing certificate is always obtained; an existing one is renewed only with auto_renew. */
  #renews(entry: Entry): boolean {
    return entry.certificate === null || this.#spec?.autoRenew === true;
  }

  #dueEntries(): Entry[] {
    const now = Date.now();
    return [...this.#entries.values()].filter((entry) => this.#renews(entry) && entry.due.getTime() <= now);
  }

  async #run(): Promise<void> {
    this.#timer = null;
    this.#busy = true;
    try {
      for (const entry of this.#dueEntries()) {
        if (this.#closed || this.#entries.get(entry.name) !== entry) continue;
        await this.#obtain(entry);
      }
    } finally {
      this.#busy = false;
      this.#arm();
    }
  }

  async #obtain(entry: Entry): Promise<void> {
    const spec = this.#spec;
    const issuer = this.#issuer;
    if (spec === null || issuer === null) return;
    const renewing = entry.certificate !== null;
    this.log.info({ domain: entry.name, provider: spec.provider }, renewing ? 'renewing certificate' : 'obtaining certificate');
    try {
      const issued = await issuer.issue([entry.name], AbortSignal.any([this.#abort.signal, AbortSignal.timeout(ORDER_TIMEOUT_MS)]));
      if (this.#closed) return;
      const certificate = saveIssued(location(spec), entry.name, issued);
      if (this.#entries.get(entry.name) !== entry) return;
      entry.certificate = certificate;
      entry.due = renewalDue(certificate.notBefore, certificate.notAfter, spec.renewalDaysBefore);
      entry.failures = 0;
      entry.lastError = null;
      this.log.info(
        { domain: entry.name, notAfter: certificate.notAfter.toISOString(), nextRenewal: entry.due.toISOString() },
        renewing ? 'certificate renewed' : 'certificate obtained',
      );
      this.audit.write(
        'configuration',
        { event: renewing ? 'tls.certificate_renewed' : 'tls.certificate_obtained', host: entry.name },
        { role: 'master', pid: process.pid },
        { provider: spec.provider, notAfter: certificate.notAfter.toISOString() },
      );
      this.changed();
    } catch (error) {
      if (this.#closed) return;
      entry.failures += 1;
      entry.lastError = `${new Date().toISOString()} ${oneLine(error)}`;
      entry.due = new Date(Date.now() + retryDelay(entry.failures, Date.now(), entry.certificate?.notAfter ?? null));
      this.log.error(
        {
          domain: entry.name,
          provider: spec.provider,
          attempt: entry.failures,
          retryAt: entry.due.toISOString(),
          keeping: entry.certificate?.notAfter.toISOString() ?? null,
        },
        `certificate ${renewing ? 'renewal' : 'order'} failed: ${oneLine(error)}`,
      );
      this.audit.write(
        'configuration',
        { event: 'tls.certificate_failed', host: entry.name, detail: oneLine(error).slice(0, 500) },
        { role: 'master', pid: process.pid },
        { attempt: entry.failures },
      );
    }
  }
}

function location(spec: IssuanceSpec): StoreLocation {
  return { certDir: spec.certDir, provider: spec.provider, authority: spec.acme === null ? 'origin-ca' : caKey(spec.acme.directoryUrl) };
}

function sameStore(a: IssuanceSpec, b: IssuanceSpec): boolean {
  const [x, y] = [location(a), location(b)];
  return x.certDir === y.certDir && x.provider === y.provider && x.authority === y.authority;
}

/** Manual certificates (never renewed by the server) and the provider's names, in serving order. */
export function certificateViews(manual: readonly CertificateInfo[], issued: readonly IssuedStatus[]): CertificateView[] {
  const describe = (certificate: CertificateInfo | null) => ({
    subjectNames: certificate?.subjectNames ?? [],
    issuer: certificate?.issuer ?? null,
    notBefore: certificate?.notBefore.toISOString() ?? null,
    notAfter: certificate?.notAfter.toISOString() ?? null,
    fingerprint256: certificate?.fingerprint256 ?? null,
  });
  return [
    ...manual.map((certificate) => ({
      name: certificate.name,
      source: 'manual' as const,
      ...describe(certificate),
      nextRenewal: null,
      lastError: null,
    })),
    ...issued.map((status) => ({
      name: status.name,
      source: status.provider,
      ...describe(status.certificate),
      nextRenewal: status.nextRenewal?.toISOString() ?? null,
      lastError: status.lastError,
    })),
  ];
}
