// Over 400 lines: one ACME order, its steps in RFC 8555's order, each failure said in one line.
/**
 * ACME issuance ([ssl] provider = "acme"), RFC 8555 with TLS-ALPN-01 from
 * RFC 8737, on acme-client. Runs in the master; the workers only serve the
 * answers the master publishes on the ChallengeBoard.
 *
 * One certificate, from the top:
 *   account   the persisted one for this directory URL (account.ts), or a
 *             new one when [ssl] agree_tos is true;
 *   order     one identifier per name;
 *   answers   for each pending authorization, the first challenge type in
 *             the preferred order that the CA offers and we can answer
 *             (a wildcard only has dns-01, RFC 8555 §7.1.3); HTTP-01 and
 *             TLS-ALPN-01 answers go on the board, DNS-01 to the provider;
 *   publish   the CA is told to validate only once board.publish() says
 *             every worker serves the answers (a CA that looks too early
 *             fails the challenge, and Let's Encrypt counts failures);
 *   validate  poll the authorizations until valid, invalid, the deadline
 *             or the caller's abort;
 *   finalize  a key and CSR made here, the chain downloaded and checked
 *             against that key (keys.ts);
 *   cleanup   every answer removed and the board published again, whether
 *             the order succeeded or not; authorizations left pending are
 *             deactivated (RFC 8555 §7.5.2) so they do not count against
 *             the CA's pending-authorization limit.
 *
 * DNS propagation: a provider's present() resolves when its API accepted
 * the record. The CA asks the zone's authoritative servers, which may lag
 * the API by seconds; `dnsPropagationDelayMs` waits that long before the CA
 * is told to look. Polling the authoritative servers would be exact and is
 * not done.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, axios as acmeHttp, crypto as acmeCrypto, type Authorization, type Order } from 'acme-client';
import type { Logger } from 'pino';
import { AccountStore } from './account.js';
import { createKeyAndCsr, issuedCertificate } from './keys.js';
import {
  IssuanceError,
  oneLine,
  type CertificateKeyType,
  type ChallengeBoard,
  type ChallengeType,
  type DnsProvider,
  type IssuedCertificate,
  type Issuer,
} from './types.js';

/** Every default of the ACME issuer, in one place, unit in the name. */
export const ACME_DEFAULTS = {
  keyType: 'ecdsa-p256' as CertificateKeyType,
  challenges: ['http-01', 'tls-alpn-01', 'dns-01'] as readonly ChallengeType[],
  /** From telling the CA to validate to the certificate: covers the CA's validation and its signing. */
  validationTimeoutMs: 180_000,
  /** Polling the CA: the first wait, doubled up to the last (RFC 8555 §7.5.1 asks clients not to hammer). */
  pollFirstIntervalMs: 250,
  pollMaxIntervalMs: 5_000,
  /** Removing answers after the order: not bound to the caller's signal, which may be why we stopped. */
  cleanupTimeoutMs: 30_000,
} as const;

const CHALLENGE_TYPES: readonly ChallengeType[] = ['http-01', 'tls-alpn-01', 'dns-01'];

/** One request to the CA, connection to answer: a CA that accepts and never answers must not hold an order for its whole timeout. */
const CA_REQUEST_TIMEOUT_MS = 30_000;

/**
 * acme-client retries a request that got no answer at all five times, 75 s
 * in all, and then fails with a TypeError of its own ("Cannot read
 * properties of undefined (reading 'config')") instead of the cause. A CA
 * that cannot be reached is said at once, in one line naming the URL and the
 * cause: the certificate manager retries the whole order with its backoff.
 * Answers with a status (429, 5xx) are still retried by acme-client as
 * RFC 8555 §6.6 asks. Installed once, first in line, on acme-client's own
 * HTTP client (used by nothing else).
 */
function reportUnreachableCa(): void {
  const installed = Symbol.for('miwidothttp.acme.unreachable');
  const http = acmeHttp as typeof acmeHttp & { [installed]?: true };
  if (http[installed]) return;
  http[installed] = true;
  http.defaults.timeout = CA_REQUEST_TIMEOUT_MS;
  const handlers = http.interceptors.response.handlers;
  const unreachable = (error: unknown): Promise<never> => {
    const failure = error as { response?: unknown; config?: { url?: string }; code?: string; message?: string; cause?: { code?: string } };
    if (failure?.response !== undefined || failure?.config === undefined) return Promise.reject(error);
    const cause = failure.cause?.code ?? failure.code ?? failure.message ?? 'no answer';
    // Without `config`, acme-client's own interceptor passes the error on untouched.
    return Promise.reject(new Error(`cannot reach the ACME server at ${failure.config.url ?? '?'}: ${cause}`));
  };
  handlers?.unshift({ fulfilled: (response) => response, rejected: unreachable, synchronous: false, runWhen: null });
}
reportUnreachableCa();

export interface AcmeIssuerOptions {
  /** The CA's directory ([ssl] acme_server); https only (RFC 8555 §6.1). */
  readonly directoryUrl: string;
  /** A contact for the account ([ssl] email), without "mailto:". */
  readonly email?: string | null;
  /** [ssl] agree_tos: without it no account is created (an existing one is still used). */
  readonly agreeTos: boolean;
  /** The root-only cert_dir: the account key and URL are kept under it (account.ts). */
  readonly accountDir: string;
  /** Challenge types in the order to try them. */
  readonly challenges?: readonly ChallengeType[];
  readonly board: ChallengeBoard;
  /** Needed for dns-01 (and so for wildcards). */
  readonly dns?: DnsProvider | null;
  readonly log: Logger;
  readonly keyType?: CertificateKeyType;
  readonly validationTimeoutMs?: number;
  /** [ssl.challenges] dns_01_propagation_delay: the wait between publishing a TXT record and asking the CA. */
  readonly dnsPropagationDelayMs: number;
}

type Challenge = Authorization['challenges'][number];

/** An answer given to one authorization, and how to take it back. */
interface Answer {
  readonly name: string;
  readonly type: ChallengeType;
  readonly authz: Authorization;
  readonly challenge: Challenge;
  readonly onBoard: boolean;
  /** The authorization's last status seen, to know which are still pending at cleanup. */
  status: Authorization['status'];
  readonly remove: (signal: AbortSignal) => Promise<void> | void;
}

/** An RFC 7807 problem document, as ACME servers send them (RFC 8555 §6.7). */
interface Problem {
  readonly type?: unknown;
  readonly detail?: unknown;
}

/**
 * @throws IssuanceError when the options cannot work (no challenge type, dns-01 without a provider, not https).
 */
export function createAcmeIssuer(options: AcmeIssuerOptions): Issuer {
  return new AcmeIssuer(options);
}

class AcmeIssuer implements Issuer {
  readonly kind = 'acme';
  readonly #options: AcmeIssuerOptions;
  readonly #challenges: readonly ChallengeType[];
  readonly #store: AccountStore;
  readonly #log: Logger;
  #client: Promise<Client> | null = null;

  constructor(options: AcmeIssuerOptions) {
    let url: URL;
    try {
      url = new URL(options.directoryUrl);
    } catch {
      throw new IssuanceError(`ACME directory ${JSON.stringify(options.directoryUrl)} is not a URL`);
    }
    if (url.protocol !== 'https:') throw new IssuanceError(`ACME directory ${options.directoryUrl} is not https (RFC 8555 §6.1)`);
    const challenges = options.challenges ?? ACME_DEFAULTS.challenges.filter((type) => type !== 'dns-01' || options.dns);
    if (challenges.length === 0) throw new IssuanceError('no ACME challenge type to use');
    for (const type of challenges) {
      if (!CHALLENGE_TYPES.includes(type)) throw new IssuanceError(`unknown ACME challenge type ${JSON.stringify(type)}`);
    }
    if (challenges.includes('dns-01') && !options.dns)
      throw new IssuanceError('dns-01 is a preferred challenge but no DNS provider is set ([ssl.challenges] dns_01_provider)');
    this.#options = options;
    this.#challenges = [...new Set(challenges)];
    this.#store = new AccountStore(options.accountDir, options.directoryUrl);
    this.#log = options.log.child({ component: 'acme', directoryUrl: options.directoryUrl });
  }

  async issue(names: readonly string[], signal?: AbortSignal): Promise<IssuedCertificate> {
    const subject = names[0];
    if (subject === undefined) throw new IssuanceError('no name to issue a certificate for');
    this.#checkNames(names);
    const client = await this.#guard(subject, 'opening the ACME account', this.#account(), signal);
    const ca = (what: string, work: Promise<unknown>) => this.#guard(subject, what, work, signal);

    let order = (await ca(
      'creating the order',
      client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) }),
    )) as Order;
    this.#log.info({ names }, 'ACME order created');
    const answers: Answer[] = [];
    let issued = false;
    try {
      const authorizations = (await ca('fetching the authorizations', client.getAuthorizations(order))) as Authorization[];
      for (const authz of authorizations) {
        const name = nameOf(authz);
        if (authz.status === 'valid') {
          this.#log.debug({ name }, 'ACME authorization already valid');
          continue;
        }
        if (authz.status !== 'pending') throw new IssuanceError(`${name}: the CA's authorization is ${authz.status}`);
        await ca(`answering for ${name}`, this.#answer(client, authz, answers, signal));
      }
      if (answers.some((answer) => answer.onBoard)) {
        await this.#guard(subject, 'waiting for the workers to serve the challenge answers', this.#options.board.publish(), signal);
      }
      const propagationMs = this.#options.dnsPropagationDelayMs;
      if (propagationMs > 0 && answers.some((answer) => answer.type === 'dns-01')) {
        await this.#guard(subject, 'waiting for DNS propagation', sleep(propagationMs, undefined, { signal }), signal);
      }
      for (const answer of answers) {
        await ca(`telling the CA to validate ${answer.name} (${answer.type})`, client.completeChallenge(answer.challenge));
      }

      const deadline = Date.now() + (this.#options.validationTimeoutMs ?? ACME_DEFAULTS.validationTimeoutMs);
      await this.#waitForAuthorizations(client, order, answers, deadline, signal);
      order = await this.#waitForOrder(client, subject, order, 'ready', deadline, signal);

      const { keyPem, csrPem } = await createKeyAndCsr(names, this.#options.keyType ?? ACME_DEFAULTS.keyType);
      order = (await ca('finalizing the order', client.finalizeOrder(order, csrPem))) as Order;
      order = await this.#waitForOrder(client, subject, order, 'valid', deadline, signal);
      const bundle = (await ca('downloading the certificate', client.getCertificate(order))) as string;
      const certificate = issuedCertificate(`the ACME server (${this.#options.directoryUrl})`, names, bundle, keyPem);
      issued = true;
      this.#log.info(
        { names, notBefore: certificate.notBefore.toISOString(), notAfter: certificate.notAfter.toISOString() },
        'certificate issued',
      );
      return certificate;
    } finally {
      await this.#cleanup(client, answers, issued);
    }
  }

  /** Wildcards and dns-01 go together; say so before asking the CA. */
  #checkNames(names: readonly string[]): void {
    const canDns = this.#challenges.includes('dns-01');
    for (const name of names) {
      if (name.startsWith('*.') && !canDns) {
        throw new IssuanceError(
          `${name}: a wildcard is validated by dns-01 only, which is not configured ([ssl.challenges] dns_01_provider)`,
        );
      }
    }
    if (new Set(names.map((name) => name.toLowerCase())).size !== names.length)
      throw new IssuanceError(`${names[0]}: a name is listed twice`);
  }

  /** The account's client, made once per issuer (concurrent issues share it; a failure is retried next time). */
  #account(): Promise<Client> {
    this.#client ??= this.#openAccount().catch((error: unknown) => {
      this.#client = null;
      throw error;
    });
    return this.#client;
  }

  async #openAccount(): Promise<Client> {
    const { directoryUrl, agreeTos, email } = this.#options;
    const stored = this.#store.load();
    if (stored?.accountUrl) {
      this.#log.debug({ accountUrl: stored.accountUrl }, 'using the persisted ACME account');
      return new Client({ directoryUrl, accountKey: stored.keyPem, accountUrl: stored.accountUrl });
    }
    if (!agreeTos) {
      throw new IssuanceError(
        `refusing to create an ACME account at ${directoryUrl}: its terms of service are not agreed to ([ssl] agree_tos = true)`,
      );
    }
    // The key is kept before the CA hears of it: if the answer is lost, the
    // next attempt presents the same key and the CA returns the same account.
    let accountKey = stored?.keyPem;
    if (accountKey === undefined) {
      accountKey = (await acmeCrypto.createPrivateEcdsaKey('P-256')).toString('utf8');
      this.#store.saveKey(accountKey);
    }
    const client = new Client({ directoryUrl, accountKey });
    const contact = email ? [`mailto:${email.replace(/^mailto:/i, '')}`] : undefined;
    await client.createAccount({ termsOfServiceAgreed: true, ...(contact ? { contact } : {}) });
    const accountUrl = client.getAccountUrl();
    this.#store.saveAccountUrl(accountUrl);
    this.#log.info({ accountUrl }, 'ACME account created');
    return client;
  }

  /** Puts up the answer to the first usable challenge of `authz`; records how to remove it before it is up. */
  async #answer(client: Client, authz: Authorization, answers: Answer[], signal: AbortSignal | undefined): Promise<void> {
    const name = nameOf(authz);
    const challenge = this.#pick(authz);
    const type = challenge.type as ChallengeType;
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    const answer = { name, type, authz, challenge, status: authz.status };
    const board = this.#options.board;
    this.#log.debug({ name, type }, 'answering ACME challenge');
    switch (type) {
      case 'http-01': {
        answers.push({ ...answer, onBoard: true, remove: () => board.clearHttp01(challenge.token) });
        board.setHttp01(challenge.token, keyAuthorization);
        return;
      }
      case 'tls-alpn-01': {
        // RFC 8737 §3: a self-signed certificate for the name alone, with the
        // critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the
        // SHA-256 of the key authorization; its own throwaway key.
        const alpnKey = await acmeCrypto.createPrivateEcdsaKey('P-256');
        const [, alpnCert] = await acmeCrypto.createAlpnCertificate(authz, keyAuthorization, alpnKey);
        const identifier = authz.identifier.value;
        answers.push({ ...answer, onBoard: true, remove: () => board.clearTlsAlpn01(identifier) });
        board.setTlsAlpn01(identifier, alpnCert.toString('utf8'), alpnKey.toString('utf8'));
        return;
      }
      case 'dns-01': {
        const dns = this.#options.dns as DnsProvider;
        // RFC 8555 §8.4: the record lives at _acme-challenge.<name>, the
        // wildcard's "*." removed (the identifier value has none).
        const fqdn = `_acme-challenge.${authz.identifier.value}`;
        answers.push({ ...answer, onBoard: false, remove: (cleanupSignal) => dns.cleanup(fqdn, keyAuthorization, cleanupSignal) });
        try {
          await dns.present(fqdn, keyAuthorization, signal);
        } catch (error) {
          if (signal?.aborted) throw error;
          throw new IssuanceError(`${name}: dns-01 via ${dns.name}: ${oneLine(error)}`);
        }
        return;
      }
    }
  }

  #pick(authz: Authorization): Challenge {
    const name = nameOf(authz);
    for (const type of this.#challenges) {
      if (authz.wildcard && type !== 'dns-01') continue;
      const challenge = authz.challenges.find((offered) => (offered.type as string) === type);
      if (challenge !== undefined) return challenge;
    }
    const offered = authz.challenges.map((challenge) => challenge.type).join(', ') || 'none';
    throw new IssuanceError(`${name}: no challenge we can answer: the CA offers ${offered}, we do ${this.#challenges.join(', ')}`);
  }

  async #waitForAuthorizations(
    client: Client,
    order: Order,
    answers: Answer[],
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const subject = answers[0]?.name ?? '';
    let intervalMs: number = ACME_DEFAULTS.pollFirstIntervalMs;
    for (;;) {
      const current = (await this.#guard(
        subject,
        'polling the authorizations',
        client.getAuthorizations(order),
        signal,
      )) as Authorization[];
      let pending = false;
      for (const answer of answers) {
        const authz = current.find((candidate) => candidate.url === answer.authz.url);
        if (authz === undefined) throw new IssuanceError(`${answer.name}: the CA dropped the authorization from the order`);
        answer.status = authz.status;
        if (authz.status === 'valid') continue;
        if (authz.status === 'pending') {
          pending = true;
          continue;
        }
        const challenge = authz.challenges.find((candidate) => candidate.url === answer.challenge.url);
        throw new IssuanceError(`${answer.name}: ${answer.type} challenge ${authz.status}: ${problemText(challenge?.error)}`);
      }
      if (!pending) return;
      if (Date.now() + intervalMs > deadline) {
        const waiting = answers.filter((answer) => answer.status === 'pending').map((answer) => `${answer.name} (${answer.type})`);
        throw new IssuanceError(`${waiting.join(', ')}: the CA did not validate within ${this.#timeoutSeconds()}s`);
      }
      await this.#guard(subject, 'waiting for the CA to validate', sleep(intervalMs, undefined, { signal }), signal);
      intervalMs = Math.min(intervalMs * 2, ACME_DEFAULTS.pollMaxIntervalMs);
    }
  }

  /** Polls the order until it is `want` (ready to finalize, or valid with its certificate). */
  async #waitForOrder(
    client: Client,
    subject: string,
    order: Order,
    want: 'ready' | 'valid',
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<Order> {
    let intervalMs: number = ACME_DEFAULTS.pollFirstIntervalMs;
    let current = order;
    for (;;) {
      if (current.status === want || (want === 'ready' && current.status === 'valid')) return current;
      if (current.status === 'invalid')
        throw new IssuanceError(`${subject}: the CA marked the order invalid: ${problemText(current.error)}`);
      if (Date.now() + intervalMs > deadline)
        throw new IssuanceError(`${subject}: the order was not ${want} within ${this.#timeoutSeconds()}s (it is ${current.status})`);
      await this.#guard(subject, `waiting for the order to be ${want}`, sleep(intervalMs, undefined, { signal }), signal);
      intervalMs = Math.min(intervalMs * 2, ACME_DEFAULTS.pollMaxIntervalMs);
      current = (await this.#guard(subject, 'polling the order', client.getOrder(current), signal)) as Order;
    }
  }

  async #cleanup(client: Client, answers: readonly Answer[], issued: boolean): Promise<void> {
    const signal = AbortSignal.timeout(ACME_DEFAULTS.cleanupTimeoutMs);
    for (const answer of answers) {
      try {
        await answer.remove(signal);
      } catch (error) {
        this.#log.warn({ name: answer.name, type: answer.type, problem: oneLine(error) }, 'could not remove an ACME challenge answer');
      }
    }
    if (answers.some((answer) => answer.onBoard)) {
      try {
        await this.#options.board.publish();
      } catch (error) {
        this.#log.warn({ problem: oneLine(error) }, 'could not publish the removal of ACME challenge answers');
      }
    }
    if (issued) return;
    for (const answer of answers.filter((candidate) => candidate.status === 'pending')) {
      try {
        await client.deactivateAuthorization(answer.authz);
        this.#log.debug({ name: answer.name }, 'pending ACME authorization deactivated');
      } catch (error) {
        this.#log.debug({ name: answer.name, problem: oneLine(error) }, 'could not deactivate a pending ACME authorization');
      }
    }
  }

  /**
   * Awaits `work` unless `signal` aborts first; anything thrown becomes one
   * IssuanceError line naming the subject and the step. acme-client's own
   * errors carry the CA's problem detail (never a key: it signs with the
   * account key but does not put it in messages).
   */
  async #guard<T>(subject: string, what: string, work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    try {
      return await abortable(work, signal);
    } catch (error) {
      if (error instanceof IssuanceError) throw error;
      if (signal?.aborted) throw new IssuanceError(`${subject}: aborted while ${what}`, { cause: signal.reason });
      throw new IssuanceError(`${subject}: ${what}: ${oneLine(error)}`);
    }
  }

  #timeoutSeconds(): number {
    return Math.round((this.#options.validationTimeoutMs ?? ACME_DEFAULTS.validationTimeoutMs) / 1000);
  }
}

/** The name an authorization is for, "*." restored for a wildcard (RFC 8555 §7.1.4). */
function nameOf(authz: Authorization): string {
  return authz.wildcard ? `*.${authz.identifier.value}` : authz.identifier.value;
}

/** `work`, or a rejection as soon as `signal` aborts (the work itself goes on, unobserved). */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}

const ACME_ERROR_PREFIX = 'urn:ietf:params:acme:error:';

/** "unauthorized: <detail>" from an ACME problem document. */
function problemText(error: unknown): string {
  if (error === null || typeof error !== 'object') return 'the CA gave no reason';
  const problem = error as Problem;
  const type = typeof problem.type === 'string' ? problem.type.replace(ACME_ERROR_PREFIX, '') : 'problem';
  const detail = typeof problem.detail === 'string' ? problem.detail : '';
  return oneLine(detail === '' ? type : `${type}: ${detail}`);
}
