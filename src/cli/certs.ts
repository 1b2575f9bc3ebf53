/**
 * `miwidothttp certs`: the certificates the running master serves — each
 * name, the names it covers, issuer, expiry, next renewal and the last
 * error loading certificates. Never a key.
 */
import { askMaster, masterAddress, masterPid } from './running.js';

const EXIT_NOT_RUNNING = 3;

interface CertificateView {
  name: string;
  subjectNames: string[];
  issuer: string;
  notAfter: string;
  source: string;
  nextRenewal: string | null;
}

export async function certsCommand(option: string | undefined, json: boolean): Promise<number> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return EXIT_NOT_RUNNING;
  }
  let answer: { ok?: boolean; certificates?: CertificateView[]; lastError?: string | null; reason?: string };
  try {
    answer = (await askMaster(address, { command: 'certs' }, 10_000)) as typeof answer;
  } catch (error) {
    process.stderr.write(`certs: ${(error as Error).message}\n`);
    return 1;
  }
  if (answer.ok !== true) {
    process.stderr.write(`certs: ${answer.reason ?? 'refused'}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ certificates: answer.certificates ?? [], lastError: answer.lastError ?? null })}\n`);
    return 0;
  }
  const certificates = answer.certificates ?? [];
  if (certificates.length === 0) process.stdout.write('no certificates (no [ssl] configured)\n');
  for (const certificate of certificates) {
    const issuer = certificate.issuer.split('\n').find((line) => line.startsWith('CN=')) ?? certificate.issuer.split('\n')[0];
    process.stdout.write(
      `${certificate.name}\tcovers ${certificate.subjectNames.join(', ')}\tissuer ${issuer}\texpires ${certificate.notAfter}\t` +
        `next renewal ${certificate.nextRenewal ?? `none (${certificate.source} certificate)`}\n`,
    );
  }
  process.stdout.write(`last error: ${answer.lastError ?? 'none'}\n`);
  return 0;
}
