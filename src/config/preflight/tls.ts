/**
 * Preflight checks of [ssl]: the files the master will read, the directory
 * it will write keys into, the program it will run as root.
 */
import { lstatSync, type Stats, statSync } from 'node:fs';
import { privateDirectoryProblem } from '../../fs/private-file.js';
import { loadCertificate } from '../../tls/certificates.js';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';

/**
 * Every manual certificate is loaded and checked, so `check` names the
 * domain whose file is missing, whose key does not match or whose
 * certificate has expired.
 */
export function manualCertificates(config: CompiledConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const certificate of config.tls?.certificates ?? []) {
    const loaded = loadCertificate(certificate);
    if (!loaded.ok) problems.push({ key: `ssl.domains.${JSON.stringify(certificate.name)}`, message: loaded.problem });
  }
  return problems;
}

/**
 * A key file others can read is a key others have; one group or others can
 * write is a key someone else can replace. Group read stays allowed (Debian's
 * ssl-cert group: keys 0640 root:ssl-cert), and is warned about when loaded.
 */
export function privateKeyFiles(config: CompiledConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const certificate of config.tls?.certificates ?? []) {
    let stat: Stats;
    try {
      stat = statSync(certificate.keyFile);
    } catch {
      continue; // manualCertificates names a missing file
    }
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    const key = `ssl.domains.${JSON.stringify(certificate.name)}.key_file`;
    if ((stat.mode & 0o004) !== 0)
      problems.push({ key, message: `${certificate.keyFile} is readable by others (mode ${mode}): chmod 600 it` });
    else if ((stat.mode & 0o022) !== 0)
      problems.push({ key, message: `${certificate.keyFile} is writable by group or others (mode ${mode}): chmod 600 it` });
  }
  return problems;
}

/** cert_dir holds the ACME account key and the issued keys: root's alone (fs/private-file.ts). */
export function privateCertDir(config: CompiledConfig): ConfigProblem[] {
  if (config.issuance === null) return [];
  const problem = privateDirectoryProblem(config.issuance.certDir);
  return problem === null ? [] : [{ key: 'ssl.cert_dir', message: problem }];
}

/** The master runs dns_01_command as root: it must be a root-owned program nobody else may change. */
export function rootOwnedDnsProgram(config: CompiledConfig): ConfigProblem[] {
  const dns = config.issuance?.acme?.dns;
  // An exec provider without a command is compile's problem already.
  if (dns?.provider !== 'exec' || dns.command === '') return [];
  const problem = rootProgramProblem(dns.command);
  return problem === null ? [] : [{ key: 'ssl.challenges.dns_01_command', message: problem }];
}

function rootProgramProblem(file: string): string | null {
  let stat: Stats;
  try {
    stat = lstatSync(file);
  } catch (error) {
    return `cannot use ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
  if (!stat.isFile()) return `${file} is not a regular file`;
  if (stat.uid !== 0) return `${file} belongs to uid ${stat.uid}: the master runs it as root, so it must be root's`;
  if ((stat.mode & 0o022) !== 0) return `${file} is writable by group or others (mode ${(stat.mode & 0o777).toString(8)})`;
  if ((stat.mode & 0o100) === 0) return `${file} is not executable`;
  return null;
}
