/**
 * `miwidothttp certs`: the certificates the running master serves — each
 * name, where it comes from, the names it covers, issuer, expiry, next
 * renewal and the last error obtaining it; then the last error loading
 * manual certificates. Never a key.
 */
import { askRunningMaster } from './running.js';

export async function certsCommand(option: string | undefined, json: boolean): Promise<number> {
  const asked = await askRunningMaster(option, 'certs', { command: 'certs' });
  if ('exitCode' in asked) return asked.exitCode;
  const { answer } = asked;
  if (json) {
    process.stdout.write(`${JSON.stringify({ certificates: answer.certificates ?? [], lastError: answer.lastError ?? null })}\n`);
    return 0;
  }
  const certificates = answer.certificates ?? [];
  if (certificates.length === 0) process.stdout.write('no certificates (no [ssl] configured)\n');
  for (const certificate of certificates) {
    const fields = [certificate.name, `source ${certificate.source}`];
    if (certificate.notAfter === null) fields.push('not obtained yet');
    else {
      const issuer = certificate.issuer?.split('\n').find((line) => line.startsWith('CN=')) ?? certificate.issuer?.split('\n')[0];
      fields.push(`covers ${certificate.subjectNames.join(', ')}`, `issuer ${issuer}`, `expires ${certificate.notAfter}`);
    }
    fields.push(
      `next renewal ${certificate.nextRenewal ?? (certificate.source === 'manual' ? 'none (manual certificate)' : 'none (auto_renew off)')}`,
    );
    if (certificate.lastError !== null) fields.push(`last error ${certificate.lastError}`);
    process.stdout.write(`${fields.join('\t')}\n`);
  }
  process.stdout.write(`last error loading certificates: ${answer.lastError ?? 'none'}\n`);
  return 0;
}
