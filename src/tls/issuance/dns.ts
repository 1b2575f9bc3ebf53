/**
 * DNS-01 providers ([ssl.challenges] dns_01_provider): they put the TXT
 * record the CA looks up (RFC 8555 §8.4) and take it away again.
 *
 *   cloudflare  the Cloudflare API v4 with a token that may edit the zone's
 *               DNS (dns_01_credentials).
 *   exec        an operator's program, run as `<cmd> present <fqdn.> <value>`
 *               and `<cmd> cleanup <fqdn.> <value>`: lego's exec provider
 *               convention (the FQDN with its trailing dot), so scripts
 *               written for lego work unchanged. It runs without a shell,
 *               with PATH and, when configured, the credentials in
 *               MIWIDOTHTTP_DNS_CREDENTIALS as its whole environment, in
 *               its own process group, killed whole at the timeout.
 *
 * Neither waits for the record to reach the zone's authoritative servers;
 * the ACME issuer waits `dnsPropagationDelayMs` before telling the CA.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Logger } from 'pino';
import { CloudflareApi } from './cloudflare-api.js';
import { IssuanceError, type DnsProvider } from './types.js';

export const DNS_DEFAULTS = {
  /** lego's choice for Cloudflare; Cloudflare accepts 1 (automatic) or 60..86400. */
  cloudflareTtlSeconds: 120,
  execTimeoutMs: 60_000,
  /** What an exec program may say on stderr that we keep (its first line is quoted). */
  execStderrBytes: 8 * 1024,
  /** The exec program's PATH: the system's directories, nothing from the master's environment. */
  execPath: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
} as const;

export interface CloudflareDnsOptions {
  readonly apiToken: string;
  /** The zone's id ([ssl] zone_id); without it the zone is looked up by name. */
  readonly zoneId?: string | null;
  readonly apiBaseUrl?: string;
  readonly ttlSeconds?: number;
  readonly requestTimeoutMs?: number;
  readonly log: Logger;
}

/** The record Cloudflare made for one present(), to delete exactly that one. */
interface CloudflareRecord {
  readonly zoneId: string;
  readonly id: string;
}

export function createCloudflareDns(options: CloudflareDnsOptions): DnsProvider {
  const api = new CloudflareApi({
    apiToken: options.apiToken,
    ...(options.apiBaseUrl ? { apiBaseUrl: options.apiBaseUrl } : {}),
    ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
  });
  const ttl = options.ttlSeconds ?? DNS_DEFAULTS.cloudflareTtlSeconds;
  if (!(ttl === 1 || (Number.isInteger(ttl) && ttl >= 60 && ttl <= 86_400)))
    throw new IssuanceError(`Cloudflare TTL ${ttl} is not 1 (automatic) or 60..86400 seconds`);
  const log = options.log.child({ component: 'dns-01', provider: 'cloudflare' });
  // Zone ids by zone name, and by the record names already resolved (so a
  // second value at the same name asks nothing).
  const zoneIds = new Map<string, string>();
  const zoneOfName = new Map<string, string>();
  const records = new Map<string, CloudflareRecord>();
  const recordKey = (fqdn: string, value: string) => `${fqdn}\n${value}`;

  /**
   * The zone that holds `fqdn`: the given zone_id, or the longest suffix of
   * the name that is a zone of the token's account (GET /zones?name=...),
   * from "a.b.example.com" up to "example.com".
   */
  async function zoneFor(fqdn: string, signal: AbortSignal | undefined): Promise<string> {
    if (options.zoneId) return options.zoneId;
    const remembered = zoneOfName.get(fqdn);
    if (remembered !== undefined) return remembered;
    const labels = fqdn.split('.');
    const tried: string[] = [];
    for (let i = 0; i < labels.length - 1; i++) {
      // "_acme-challenge.example.com" and the like are never zone apexes one can hold.
      if (labels[i]?.startsWith('_')) continue;
      const candidate = labels.slice(i).join('.');
      const known = zoneIds.get(candidate);
      if (known !== undefined) {
        zoneOfName.set(fqdn, known);
        return known;
      }
      tried.push(candidate);
      const zones = await api.call(`cloudflare: looking up zone ${candidate}`, 'GET', '/zones', {
        query: { name: candidate },
        ...(signal ? { signal } : {}),
      });
      const zone = Array.isArray(zones)
        ? (zones as { id?: unknown; name?: unknown }[]).find((entry) => entry?.name === candidate && typeof entry.id === 'string')
        : undefined;
      if (zone !== undefined) {
        zoneIds.set(candidate, zone.id as string);
        zoneOfName.set(fqdn, zone.id as string);
        return zone.id as string;
      }
    }
    throw new IssuanceError(`cloudflare: no zone for ${fqdn} that this token can see (tried ${tried.join(', ')})`);
  }

  return {
    name: 'cloudflare',
    async present(fqdn, value, signal) {
      const zoneId = await zoneFor(fqdn, signal);
      const result = await api.call(`cloudflare: creating TXT ${fqdn}`, 'POST', `/zones/${encodeURIComponent(zoneId)}/dns_records`, {
        body: { type: 'TXT', name: fqdn, content: value, ttl },
        ...(signal ? { signal } : {}),
      });
      const id = (result as { id?: unknown } | null)?.id;
      if (typeof id !== 'string' || id === '') throw new IssuanceError(`cloudflare: creating TXT ${fqdn}: the answer has no record id`);
      records.set(recordKey(fqdn, value), { zoneId, id });
      log.debug({ fqdn, recordId: id }, 'TXT record created');
    },
    async cleanup(fqdn, value, signal) {
      const key = recordKey(fqdn, value);
      let record = records.get(key);
      if (record === undefined) {
        // Not made by this process (a restart in between): find it by name and content.
        const zoneId = await zoneFor(fqdn, signal);
        const found = await api.call(`cloudflare: looking up TXT ${fqdn}`, 'GET', `/zones/${encodeURIComponent(zoneId)}/dns_records`, {
          query: { type: 'TXT', name: fqdn },
          ...(signal ? { signal } : {}),
        });
        // Cloudflare may hand TXT content back in quotes.
        const match = Array.isArray(found)
          ? (found as { id?: unknown; content?: unknown }[]).find((entry) => entry?.content === value || entry?.content === `"${value}"`)
          : undefined;
        if (match === undefined || typeof match.id !== 'string') {
          log.debug({ fqdn }, 'no TXT record to remove');
          return;
        }
        record = { zoneId, id: match.id };
      }
      await api.call(
        `cloudflare: deleting TXT ${fqdn}`,
        'DELETE',
        `/zones/${encodeURIComponent(record.zoneId)}/dns_records/${encodeURIComponent(record.id)}`,
        signal ? { signal } : {},
      );
      records.delete(key);
      log.debug({ fqdn, recordId: record.id }, 'TXT record deleted');
    },
  };
}

export interface ExecDnsOptions {
  /** The program's absolute path ([ssl.challenges] dns_01_command). */
  readonly command: string;
  /** dns_01_credentials, handed over as MIWIDOTHTTP_DNS_CREDENTIALS (never as an argument: /proc/PID/cmdline is world-readable). */
  readonly credentials?: string | null;
  readonly timeoutMs?: number;
  readonly log: Logger;
}

export function createExecDns(options: ExecDnsOptions): DnsProvider {
  if (!path.isAbsolute(options.command))
    throw new IssuanceError(`the DNS-01 program ${JSON.stringify(options.command)} is not an absolute path`);
  const timeoutMs = options.timeoutMs ?? DNS_DEFAULTS.execTimeoutMs;
  const log = options.log.child({ component: 'dns-01', provider: 'exec' });
  const env: Record<string, string> = { PATH: DNS_DEFAULTS.execPath };
  if (options.credentials) env.MIWIDOTHTTP_DNS_CREDENTIALS = options.credentials;

  async function run(action: 'present' | 'cleanup', fqdn: string, value: string, signal: AbortSignal | undefined): Promise<void> {
    const what = `exec: ${options.command} ${action} ${fqdn}`;
    const outcome = await runProgram(options.command, [action, `${fqdn}.`, value], env, timeoutMs, signal);
    const scrub = (text: string) => (options.credentials ? text.split(options.credentials).join('[credentials]') : text);
    switch (outcome.kind) {
      case 'ok':
        log.debug({ action, fqdn }, 'DNS-01 program succeeded');
        return;
      case 'spawn-failed':
        throw new IssuanceError(`${what}: cannot run it: ${outcome.code}`);
      case 'timeout':
        throw new IssuanceError(`${what}: did not finish within ${timeoutMs / 1000}s (killed)`);
      case 'aborted':
        throw new IssuanceError(`${what}: aborted (killed)`);
      case 'failed': {
        const status = outcome.signal !== null ? `killed by ${outcome.signal}` : `exited with status ${outcome.status}`;
        const firstLine = outcome.stderr
          .split('\n')
          .map((line) => line.trim())
          .find((line) => line !== '');
        throw new IssuanceError(`${what}: ${status}${firstLine ? `: ${scrub(firstLine).slice(0, 300)}` : ''}`);
      }
    }
  }

  return {
    name: 'exec',
    present: (fqdn, value, signal) => run('present', fqdn, value, signal),
    cleanup: (fqdn, value, signal) => run('cleanup', fqdn, value, signal),
  };
}

type ProgramOutcome =
  | { kind: 'ok' }
  | { kind: 'spawn-failed'; code: string }
  | { kind: 'timeout' }
  | { kind: 'aborted' }
  | { kind: 'failed'; status: number | null; signal: NodeJS.Signals | null; stderr: string };

/** Runs `command` without a shell in a process group of its own, so a timeout or an abort kills what it started too. */
function runProgram(
  command: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<ProgramOutcome> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve({ kind: 'aborted' });
      return;
    }
    const child = spawn(command, args, { env, cwd: '/', stdio: ['ignore', 'ignore', 'pipe'], detached: true, shell: false });
    let stderr = '';
    let ended: 'timeout' | 'aborted' | null = null;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      ended ??= 'timeout';
      killGroup();
    }, timeoutMs);
    const onAbort = () => {
      ended ??= 'aborted';
      killGroup();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < DNS_DEFAULTS.execStderrBytes) stderr += chunk.slice(0, DNS_DEFAULTS.execStderrBytes - stderr.length);
    });
    const finish = (outcome: ProgramOutcome) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    child.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'spawn-failed', code: error.code ?? error.message }));
    child.on('close', (status, exitSignal) => {
      if (ended !== null) finish({ kind: ended });
      else if (status === 0) finish({ kind: 'ok' });
      else finish({ kind: 'failed', status, signal: exitSignal, stderr });
    });
  });
}
