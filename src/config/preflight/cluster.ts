/**
 * Preflight of [cluster]: the node's certificate must be the cluster CA's,
 * for this node, with its key. Checked by `check` too, so a node that etcd
 * or the cluster would refuse is told before it starts.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { nodeIdentityProblem } from '../../cluster/node-identity.js';
import type { ConfigProblem } from '../problem.js';
import type { CompiledConfig } from '../types.js';

export function clusterIdentity(config: CompiledConfig): ConfigProblem[] {
  const cluster = config.cluster;
  if (cluster === null) return [];
  const problem = identityProblem(cluster.caFile, cluster.certFile, cluster.keyFile, cluster.nodeName);
  return problem === null ? [] : [problem];
}

/** The node's certificate must be the cluster CA's, for this node, with its key: checked now, so `check` says so. */
function identityProblem(caFile: string, certFile: string, keyFile: string, nodeName: string): ConfigProblem | null {
  const read = (file: string): string | { problem: string } => {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      return { problem: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
    }
  };
  const caText = read(caFile);
  if (typeof caText !== 'string') return { key: 'cluster.ca_file', message: caText.problem };
  const certText = read(certFile);
  if (typeof certText !== 'string') return { key: 'cluster.cert_file', message: certText.problem };
  const keyText = read(keyFile);
  if (typeof keyText !== 'string') return { key: 'cluster.key_file', message: keyText.problem };
  let ca: X509Certificate;
  let certificate: X509Certificate;
  try {
    ca = new X509Certificate(caText);
  } catch {
    return { key: 'cluster.ca_file', message: `${caFile} is not a PEM certificate` };
  }
  try {
    certificate = new X509Certificate(certText);
  } catch {
    return { key: 'cluster.cert_file', message: `${certFile} is not a PEM certificate` };
  }
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(keyText)))
      return { key: 'cluster.key_file', message: `${keyFile} is not the key of ${certFile}` };
  } catch {
    return { key: 'cluster.key_file', message: `${keyFile} is not a PEM private key` };
  }
  const problem = nodeIdentityProblem(certificate, ca, nodeName);
  return problem === null ? null : { key: 'cluster.cert_file', message: `${certFile}: ${problem}` };
}
