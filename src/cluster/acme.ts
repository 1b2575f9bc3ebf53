/**
 * Certificates issued once for the whole cluster.
 *
 * Each node's certificate manager runs its own schedule; its issuer is
 * wrapped here so that, for each name,
 *   1. a certificate another node stored (`certs/AUTHORITY/NAME`, sealed)
 *      that is not yet due is taken instead of ordering;
 *   2. otherwise one node orders: it holds `acme/locks/AUTHORITY/NAME`,
 *      created in a transaction under its lease. The lock's create revision
 *      is a fencing token: the certificate is stored only by a transaction
 *      that compares it, so a holder that was paused past its lease (and
 *      whose lock another node took since) cannot overwrite what the new
 *      holder stored;
 *   3. the others wait for the stored certificate (or for the lock to go:
 *      the holder failed or died, and one of them orders).
 * The ACME account is shared too (sealed under `acme/accounts/CA`): the
 * node that orders first registers it, the others use the same one.
 */
import type { Lease, Namespace } from 'etcd3';
import type { Logger } from 'pino';
import type { IssuanceSpec } from '../config/types.js';
import { renewalDue } from '../master/certificate-manager.js';
import { AccountStore, caKey } from '../tls/issuance/account.js';
import { IssuanceError, type IssuedCertificate, type Issuer } from '../tls/issuance/types.js';
import { etcdProblem, KEYS } from './etcd.js';
import { open, seal, type ClusterKeys } from './secrets.js';

const WAIT_POLL_MS = 500;

export interface IssuanceContext {
  readonly keys: Namespace;
  readonly secrets: ClusterKeys;
  readonly prefix: string;
  readonly nodeName: string;
  lease(): Lease;
  /** Why the cluster takes no writes now (read-only), or null. */
  writeRefusal(): string | null;
  readonly log: Logger;
}

interface StoredCertificate {
  readonly certPem: string;
  readonly chainPem: string | null;
  readonly keyPem: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly by: string;
}

/** A lock held: its create revision fences every write made under it. */
export interface AcmeLock {
  readonly key: string;
  readonly revision: string;
}

/** Takes `key` under `lease` unless someone holds it; null when someone does. */
export async function tryLock(keys: Namespace, key: string, holder: string, lease: Lease): Promise<AcmeLock | null> {
  const result = await keys.if(key, 'Create', '==', 0).then(lease.put(key).value(holder)).commit();
  return result.succeeded ? { key, revision: result.header.revision } : null;
}

/** Writes `value` at `target` only while `lock` is still the one we took. */
export async function putFenced(keys: Namespace, lock: AcmeLock, target: string, value: string): Promise<boolean> {
  const result = await keys.if(lock.key, 'Create', '==', lock.revision).then(keys.put(target).value(value)).commit();
  return result.succeeded;
}

export async function unlock(keys: Namespace, lock: AcmeLock): Promise<void> {
  await keys.if(lock.key, 'Create', '==', lock.revision).then(keys.delete().key(lock.key)).commit();
}

export function authorityOf(spec: IssuanceSpec): string {
  return spec.acme === null ? 'origin-ca' : caKey(spec.acme.directoryUrl);
}

export class ClusterIssuer implements Issuer {
  readonly kind: Issuer['kind'];

  constructor(
    private readonly context: IssuanceContext,
    private readonly spec: IssuanceSpec,
    private readonly inner: Issuer,
  ) {
    this.kind = inner.kind;
  }

  async issue(names: readonly string[], signal?: AbortSignal): Promise<IssuedCertificate> {
    const name = names[0] ?? '';
    const authority = authorityOf(this.spec);
    const certKey = KEYS.certificate(authority, name);
    const lockKey = KEYS.acmeLock(`${authority}/${name}`);
    const { keys, log } = this.context;
    for (;;) {
      if (signal?.aborted) throw new IssuanceError(`${name}: aborted while waiting for the cluster`);
      const stored = await this.#stored(certKey);
      if (stored !== null && renewalDue(stored.notBefore, stored.notAfter, this.spec.renewalDaysBefore).getTime() > Date.now()) {
        log.info({ domain: name, notAfter: stored.notAfter.toISOString() }, 'certificate taken from the cluster');
        return stored;
      }
      const refused = this.context.writeRefusal();
      if (refused !== null) throw new IssuanceError(`${name}: no certificate order now: ${refused}`);
      let lock: AcmeLock | null;
      try {
        lock = await tryLock(keys, lockKey, this.context.nodeName, this.context.lease());
      } catch (error) {
        throw new IssuanceError(`${name}: cannot take the cluster's order lock: ${etcdProblem(error)}`);
      }
      if (lock === null) {
        await this.#waitForOthers(certKey, lockKey, stored, signal);
        continue;
      }
      try {
        // Someone may have stored one between our read and our lock.
        const latest = await this.#stored(certKey);
        if (latest !== null && renewalDue(latest.notBefore, latest.notAfter, this.spec.renewalDaysBefore).getTime() > Date.now())
          return latest;
        await this.#accountDown();
        log.info({ domain: name, lock: lock.revision }, 'holding the cluster lock for this name: ordering');
        const issued = await this.inner.issue(names, signal);
        await this.#accountUp();
        const record: StoredCertificate = {
          certPem: issued.certPem,
          chainPem: issued.chainPem,
          keyPem: issued.keyPem,
          notBefore: issued.notBefore.toISOString(),
          notAfter: issued.notAfter.toISOString(),
          by: this.context.nodeName,
        };
        const stored = await putFenced(
          keys,
          lock,
          certKey,
          seal(this.context.secrets, this.context.prefix + certKey, JSON.stringify(record)),
        );
        if (!stored)
          throw new IssuanceError(
            `${name}: lost the cluster's order lock while ordering (paused past its lease); another node's certificate stands`,
          );
        return issued;
      } finally {
        await unlock(keys, lock).catch(() => undefined);
      }
    }
  }

  async #stored(certKey: string): Promise<IssuedCertificate | null> {
    let sealed: string | null;
    try {
      sealed = await this.context.keys.get(certKey).string();
    } catch (error) {
      throw new IssuanceError(`cannot read the cluster's certificate ${certKey}: ${etcdProblem(error)}`);
    }
    if (sealed === null) return null;
    try {
      const record = JSON.parse(open(this.context.secrets, this.context.prefix + certKey, sealed).toString('utf8')) as StoredCertificate;
      return {
        certPem: record.certPem,
        chainPem: record.chainPem,
        keyPem: record.keyPem,
        notBefore: new Date(record.notBefore),
        notAfter: new Date(record.notAfter),
      };
    } catch (error) {
      this.context.log.error({ key: certKey, problem: (error as Error).message }, "ignored the cluster's stored certificate");
      return null;
    }
  }

  /** Until the lock is gone or a newer certificate than `before` is stored. */
  async #waitForOthers(certKey: string, lockKey: string, before: IssuedCertificate | null, signal: AbortSignal | undefined): Promise<void> {
    this.context.log.info({ key: lockKey }, 'another node is ordering this certificate: waiting for it');
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
      if (signal?.aborted) return;
      try {
        if ((await this.context.keys.get(lockKey).string()) === null) return;
        const now = await this.#stored(certKey);
        if (now !== null && (before === null || now.notAfter > before.notAfter)) return;
      } catch {
        // etcd busy or read-only: keep waiting; the caller's deadline ends it
      }
    }
  }

  /** Before ordering: the cluster's ACME account, written where the ACME issuer reads it. */
  async #accountDown(): Promise<void> {
    const acme = this.spec.acme;
    if (acme === null) return;
    const key = KEYS.acmeAccount(caKey(acme.directoryUrl));
    const sealed = await this.context.keys.get(key).string();
    if (sealed === null) return;
    const account = JSON.parse(open(this.context.secrets, this.context.prefix + key, sealed).toString('utf8')) as {
      keyPem: string;
      accountUrl: string | null;
    };
    const store = new AccountStore(this.spec.certDir, acme.directoryUrl);
    const local = store.load();
    if (local?.keyPem === account.keyPem && local.accountUrl === account.accountUrl) return;
    store.saveKey(account.keyPem);
    if (account.accountUrl !== null) store.saveAccountUrl(account.accountUrl);
  }

  /** After ordering: the account this node used becomes the cluster's when it has none. */
  async #accountUp(): Promise<void> {
    const acme = this.spec.acme;
    if (acme === null) return;
    const local = new AccountStore(this.spec.certDir, acme.directoryUrl).load();
    if (local === null) return;
    const key = KEYS.acmeAccount(caKey(acme.directoryUrl));
    const value = seal(this.context.secrets, this.context.prefix + key, JSON.stringify(local));
    await this.context.keys
      .if(key, 'Create', '==', 0)
      .then(this.context.keys.put(key).value(value))
      .commit()
      .catch(() => undefined);
  }
}
