/**
 * Checks of a validated config that refuse what it asks when the server
 * would do something else: a defence turned off ([security.anti_smuggling])
 * or a vhost name claimed twice. Pure, like compile.ts, which runs them.
 */
import type { ConfigProblem } from './problem.js';
import type { RawConfig } from './schema.js';
import type { VhostSpec } from './types.js';

/**
 * [security.anti_smuggling] switches that would turn a defence off. Each is
 * refused, saying why, rather than honoured: a request another hop frames
 * or reads differently is how requests are smuggled (RFC 9112 §11.2), and
 * nothing an operator gains by it is worth that.
 */
const SMUGGLING_DEFENCES: readonly [keyof RawConfig['security']['anti_smuggling'], string][] = [
  ['strict_http_parsing', "lenient parsing (obs-fold, bare LF, Node's insecureHTTPParser) is what request smuggling exploits"],
  ['reject_invalid_headers', 'a header name that is not a token or a value with a control character is read differently by another hop'],
  ['normalize_headers', 'a field sent twice that may appear once is read as its first value here and its last by another hop'],
  [
    'reject_ambiguous_requests',
    'Content-Length with Transfer-Encoding (or Transfer-Encoding on HTTP/1.0) is the classic request smuggling (RFC 9112 §6.1)',
  ],
  [
    'prefer_transfer_encoding',
    'RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; framing by Content-Length instead is request smuggling',
  ],
  ['validate_content_length', 'a Content-Length that is not plain digits is where two hops disagree about where a body ends'],
  [
    'reject_invalid_characters',
    'raw quotes, angle brackets and backslashes in a request-target are read differently by the hops and applications behind us',
  ],
];

export function antiSmuggling(raw: RawConfig, problems: ConfigProblem[]): void {
  for (const [key, why] of SMUGGLING_DEFENCES) {
    if (raw.security.anti_smuggling[key] === false) {
      problems.push({ key: `security.anti_smuggling.${key}`, message: `cannot be turned off: ${why}` });
    }
  }
}

/**
 * A name claimed twice: the first vhost that lists it always wins (router.ts),
 * so the second claim is dead config, and usually a copy-paste mistake.
 */
export function duplicateDomains(vhosts: readonly VhostSpec[], problems: ConfigProblem[]): void {
  const claimedBy = new Map<string, number>();
  vhosts.forEach((vhost, i) => {
    vhost.domains.forEach((domain, j) => {
      const first = claimedBy.get(domain);
      if (first === undefined) claimedBy.set(domain, i);
      else
        problems.push({
          key: `vhosts[${i}].domains[${j}]`,
          message: `${JSON.stringify(domain)} is already claimed by vhosts[${first}]${first === i ? ' (listed twice)' : ', which always wins'}`,
        });
    });
  });
}
