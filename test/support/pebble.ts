/**
 * A real ACME server for tests: Debian's `pebble` (Let's Encrypt's test CA)
 * and `pebble-challtestsrv` as its DNS, on free loopback ports, from a
 * config written to a temporary folder. Nothing outside this machine.
 *
 *   const pebble = await startPebble({ httpPort, tlsPort });
 *   // pebble validates HTTP-01 at 127.0.0.1:httpPort and TLS-ALPN-01 at
 *   // 127.0.0.1:tlsPort; every name resolves to 127.0.0.1 (challtestsrv).
 *   // Another process (the real server's master): spawn it with
 *   //   env: { ...process.env, ...pebble.env }   (NODE_EXTRA_CA_CERTS)
 *   // and acme_server = pebble.directoryUrl.
 *   // This process (acme-client in a test): const untrust = trustInProcess(pebble.caPem);
 *   ...
 *   await pebble.stop();
 *
 * Pebble's API is HTTPS with a certificate made here, signed by a CA made
 * here (`caFile`); the CA that signs the certificates pebble *issues* is
 * pebble's own, new each run (`issuingRoot()`).
 *
 * Set for speed and determinism: PEBBLE_VA_NOSLEEP=1 (no random wait
 * before validating), PEBBLE_WFE_NONCEREJECT=0 (no deliberate badNonce),
 * PEBBLE_AUTHZREUSE=0 (every order is validated afresh) unless asked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { freePort } from './harness.js';
import { TestCa } from './test-ca.js';

export const PEBBLE_BIN = '/usr/bin/pebble';
export const CHALLTESTSRV_BIN = '/usr/bin/pebble-challtestsrv';
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

export interface PebbleOptions {
  /** The port pebble connects to for HTTP-01 (on the address the name resolves to, 127.0.0.1). */
  readonly httpPort: number;
  /** The port pebble connects to for TLS-ALPN-01. */
  readonly tlsPort: number;
  /** Lifetime of issued certificates (pebble's certificateValidityPeriod), for short-lived certificates. */
  readonly certificateValiditySeconds?: number;
  /** PEBBLE_AUTHZREUSE: how often (0..100 %) pebble reuses a valid authorization; default 0. */
  readonly authzReusePercent?: number;
}

export interface Pebble {
  /** The ACME directory ("https://127.0.0.1:PORT/dir"). */
  readonly directoryUrl: string;
  /** The same directory under the name "localhost" (for a second account key: another URL is another CA to the issuer). */
  readonly directoryUrlByName: string;
  /** Pebble's management API (roots, intermediates, cert status). */
  readonly managementUrl: string;
  /** The CA that signed pebble's API certificate: trust it to talk to pebble. */
  readonly caFile: string;
  readonly caPem: string;
  /** Environment for a process that talks to pebble: NODE_EXTRA_CA_CERTS = caFile. */
  readonly env: { readonly NODE_EXTRA_CA_CERTS: string };
  /** challtestsrv's DNS server, "127.0.0.1:PORT" (pebble's -dnsserver). */
  readonly dnsServer: string;
  /** challtestsrv's management API (set-txt, clear-txt, ...). */
  readonly challtestsrvUrl: string;
  /** Adds a TXT record (challtestsrv keeps every value set for a host until cleared). */
  setTxt(fqdn: string, value: string): Promise<void>;
  /** Removes every TXT value of `fqdn`. */
  clearTxt(fqdn: string): Promise<void>;
  /** The root of the chains pebble issues (new each run), PEM. */
  issuingRoot(): Promise<string>;
  /** The process ids of pebble and challtestsrv (to check that stop() leaves none). */
  readonly pids: readonly number[];
  /** What pebble and challtestsrv printed so far (for a failing test's message). */
  logs(): string;
  /** Stops both processes (TERM, then KILL) and removes the folder; no process outlives it. */
  stop(): Promise<void>;
}

/**
 * Trusts `caPem` for TLS clients of this process from now on (acme-client's
 * axios, fetch, https) on top of the default roots, as NODE_EXTRA_CA_CERTS
 * would at start-up. Returns the undo.
 */
export function trustInProcess(caPem: string): () => void {
  const before = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...before, caPem]);
  return () => tls.setDefaultCACertificates(before);
}

export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(path.join(tmpdir(), 'miwidothttp-pebble-'));
  const children: ChildProcess[] = [];
  const logFile = path.join(dir, 'pebble.log');
  const killAll = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  // A test process that dies without stop() must not leave pebble behind.
  process.on('exit', killAll);
  try {
    const ca = new TestCa(dir, 'miwidothttp test ACME API CA');
    const api = ca.issue('api', ['localhost'], { ipAddresses: ['127.0.0.1', '::1'] });
    const [acmePort, managementPort, dnsPort, challtestsrvPort] = await distinctFreePorts(4);
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: api.cert,
        privateKey: api.key,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.certificateValiditySeconds === undefined ? {} : { certificateValidityPeriod: options.certificateValiditySeconds }),
      },
    };
    const configFile = path.join(dir, 'pebble-config.json');
    writeFileSync(configFile, JSON.stringify(config, null, 1));

    const log = openSync(logFile, 'a');
    try {
      const challtestsrv = spawn(
        CHALLTESTSRV_BIN,
        [
          '-management',
          `127.0.0.1:${challtestsrvPort}`,
          '-dns01',
          `127.0.0.1:${dnsPort}`,
          '-http01',
          '',
          '-https01',
          '',
          '-tlsalpn01',
          '',
          '-defaultIPv4',
          '127.0.0.1',
          // No AAAA answers: pebble would try ::1 first, where the test's servers do not listen.
          '-defaultIPv6',
          '',
        ],
        { cwd: dir, stdio: ['ignore', log, log] },
      );
      children.push(challtestsrv);
      const pebble = spawn(PEBBLE_BIN, ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], {
        cwd: dir,
        stdio: ['ignore', log, log],
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          PEBBLE_VA_NOSLEEP: '1',
          PEBBLE_WFE_NONCEREJECT: '0',
          PEBBLE_AUTHZREUSE: String(options.authzReusePercent ?? 0),
        },
      });
      children.push(pebble);
    } finally {
      closeSync(log);
    }

    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    const challtestsrvUrl = `http://127.0.0.1:${challtestsrvPort}`;
    const logs = () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    await waitReady('pebble', children, logs, async () => (await httpsGet(directoryUrl, ca.certPem)).status === 200);
    await waitReady(
      'pebble-challtestsrv',
      children,
      logs,
      async () => (await post(`${challtestsrvUrl}/clear-txt`, { host: 'ready.invalid.' })) === 200,
    );

    let stopped = false;
    return {
      directoryUrl,
      directoryUrlByName: `https://localhost:${acmePort}/dir`,
      managementUrl: `https://127.0.0.1:${managementPort}`,
      caFile: ca.certFile,
      caPem: ca.certPem,
      env: { NODE_EXTRA_CA_CERTS: ca.certFile },
      dnsServer: `127.0.0.1:${dnsPort}`,
      challtestsrvUrl,
      pids: children.map((child) => child.pid).filter((pid) => pid !== undefined),
      async setTxt(fqdn, value) {
        const status = await post(`${challtestsrvUrl}/set-txt`, { host: dotted(fqdn), value });
        if (status !== 200) throw new Error(`challtestsrv set-txt ${fqdn}: HTTP ${status}`);
      },
      async clearTxt(fqdn) {
        const status = await post(`${challtestsrvUrl}/clear-txt`, { host: dotted(fqdn) });
        if (status !== 200) throw new Error(`challtestsrv clear-txt ${fqdn}: HTTP ${status}`);
      },
      async issuingRoot() {
        const answer = await httpsGet(`https://127.0.0.1:${managementPort}/roots/0`, ca.certPem);
        if (answer.status !== 200) throw new Error(`pebble /roots/0: HTTP ${answer.status}`);
        return answer.body;
      },
      logs,
      async stop() {
        if (stopped) return;
        stopped = true;
        await Promise.all(children.map((child) => stopChild(child)));
        process.off('exit', killAll);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    killAll();
    await Promise.all(children.map((child) => stopChild(child)));
    process.off('exit', killAll);
    const output = (() => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    })();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n--- pebble output ---\n${output}`);
  }
}

/** challtestsrv wants the FQDN with its final dot. */
function dotted(fqdn: string): string {
  return fqdn.endsWith('.') ? fqdn : `${fqdn}.`;
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function waitReady(
  what: string,
  children: readonly ChildProcess[],
  logs: () => string,
  probe: () => Promise<boolean>,
): Promise<void> {
  const until = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const dead = children.find((child) => child.exitCode !== null || child.signalCode !== null);
    if (dead !== undefined)
      throw new Error(`${path.basename(dead.spawnfile)} exited (${dead.exitCode ?? dead.signalCode}) before ${what} was ready`);
    try {
      if (await probe()) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > until) throw new Error(`${what} not ready within ${START_TIMEOUT_MS / 1000}s\n${logs().slice(-2000)}`);
    await sleep(50);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

function httpsGet(url: string, caPem: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, { ca: caPem, agent: false, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer`)));
    request.on('error', reject);
  });
}

function post(url: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent: false, timeout: 5_000, headers: { 'content-type': 'application/json' } },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer`)));
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}
