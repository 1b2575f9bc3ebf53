/**
 * The issuer [ssl] asks for, loaded when it first issues: its code
 * (providers.ts: acme-client, axios, node-forge) is ~25 MB of the master's
 * resident memory (bench/idle-memory.ts), which a master serving manual
 * certificates, or none, never needs.
 */
import type { Logger } from 'pino';
import type { IssuanceSpec } from '../../config/types.js';
import type { ChallengeBoard, IssuedCertificate, Issuer } from './types.js';

export function createIssuer(spec: IssuanceSpec, board: ChallengeBoard, log: Logger): Issuer {
  let provider: Promise<Issuer> | null = null;
  return {
    kind: spec.cloudflare !== null ? 'cloudflare' : 'acme',
    async issue(names: readonly string[], signal?: AbortSignal): Promise<IssuedCertificate> {
      provider ??= import('./providers.js').then(({ createProviderIssuer }) => createProviderIssuer(spec, board, log));
      return (await provider).issue(names, signal);
    },
  };
}
