/**
 * `miwidothttp certs`: the certificates the running master serves — each
 * name, the names it covers, issuer, expiry, next renewal and the last
 * error loading certificates. Never a key.
 */
import { askRunningMaster } from './running.js';

interface CertificateView {
  name: string;
  subjectNames: string[];
  issuer: string;
  notAfter: string;
  source: string;
  nextRenewal: string | null;
}

export async function certsCommand(option: string | undefined, json: boolean): Promise<number> {
  const asked = await askRunningMaster<{ ok?: boolean; certificates?: CertificateView[]; lastError?: string | null; reason?: string }>(option, 'certs', { command: 'certs' });
  if ('exitCode' in asked) return asked.exitCode;
  const { answer } = asked;
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
