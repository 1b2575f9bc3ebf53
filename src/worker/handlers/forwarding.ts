/**
 * The headers that tell an upstream who the client is and how it reached
 * us. The proxy owns every one of them: each is set here, or removed, and
 * never passed through as the client wrote it. A client that could choose
 * its X-Client-IP or Forwarded upstream would choose its address for every
 * limit, ban and log behind this server (a second miwidothttp, an
 * application reading CF-Connecting-IP), and one that could choose
 * X-Original-URL or X-Forwarded-Prefix would choose the path some
 * frameworks route by.
 *
 * What the upstream gets:
 * - X-Real-IP: the client, as the pipeline resolved it (PROXY protocol,
 *   [security.forwarded]);
 * - X-Forwarded-For: the list a trusted proxy sent (its hops kept), then the
 *   peer the request came from (RFC 7239 §5.2's "for" of this hop: the TCP
 *   peer or the PROXY protocol source). From any other peer the client's
 *   own list is dropped: it is the client's to write, so nobody behind us may
 *   believe it;
 * - X-Forwarded-Proto, X-Forwarded-Host: our scheme, and the host asked for.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestContext } from './types.js';

/**
 * Request fields naming the client, its address, the scheme, host, port or
 * path it used: de-facto standards of proxies, CDNs and frameworks. The
 * proxy sets the four of the module comment and removes the rest.
 */
export const ADDRESS_HEADERS: ReadonlySet<string> = new Set([
  'x-real-ip',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  // RFC 7239; its non-standard forerunners.
  'forwarded',
  'forwarded-for',
  'x-forwarded',
  'x-forwarded-by',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-prefix',
  'x-url-scheme',
  'front-end-https',
  // CDNs and load balancers: Cloudflare, Akamai and Cloudflare Enterprise, Fastly, Envoy, others.
  'cf-connecting-ip',
  'cf-connecting-ipv6',
  'true-client-ip',
  'fastly-client-ip',
  'x-envoy-external-address',
  'x-client-ip',
  'x-cluster-client-ip',
  'client-ip',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
  'x-proxyuser-ip',
  'x-original-forwarded-for',
  // The original request as a front proxy saw it (IIS URL Rewrite, Symfony, Laravel, nginx ingress).
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-original-host',
  'x-host',
]);

/**
 * The address headers for the upstream, as a flat [name, value, ...] list.
 * `incoming` is the client's request; an X-Forwarded-For the client named
 * in Connection was meant for this hop only (RFC 9110 §7.6.1) and is not
 * kept even from a trusted proxy.
 */
export function forwardingHeaders(
  incoming: IncomingHttpHeaders,
  ctx: RequestContext,
  connectionListed: ReadonlySet<string> | null,
): string[] {
  const peer = ctx.peer ?? { ip: ctx.clientIp, trustedProxy: false };
  const prior = peer.trustedProxy && !connectionListed?.has('x-forwarded-for') ? joined(incoming['x-forwarded-for']) : '';
  const out = [
    'x-real-ip',
    ctx.clientIp,
    'x-forwarded-for',
    prior === '' ? peer.ip : `${prior}, ${peer.ip}`,
    'x-forwarded-proto',
    ctx.protocol,
  ];
  const host = incoming.host;
  if (host !== undefined && host !== '') out.push('x-forwarded-host', host);
  return out;
}

function joined(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return (typeof value === 'string' ? value : value.join(', ')).trim();
}
