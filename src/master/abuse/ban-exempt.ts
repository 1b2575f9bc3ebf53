/**
 * Who limits never ban ([security.ddos] ignore_ip, fail2ban's ignoreip):
 * by default the loopback addresses and the server's own. A ban of either
 * locks out the operator on the machine, health checks, and a local reverse
 * proxy that every client arrives through (without trust_proxy they all are
 * 127.0.0.1); loopback traffic is no denial of service from outside. The
 * operator may list them in ignore_ip or not (`ignore_ip = []`).
 */
import { networkInterfaces } from 'node:os';
import { CidrSet } from '../../net/cidr.js';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** The addresses of this host's interfaces, as the master sees them at (re)load. */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((address) => address.address.replace(/%.*$/, '')));
}

/** ignore_ip with "loopback" and "self" resolved. */
export function banExemptions(ignoreIp: readonly string[]): CidrSet {
  return new CidrSet(ignoreIp.flatMap((entry) => (entry === 'loopback' ? LOOPBACK : entry === 'self' ? ownAddresses() : [entry])));
}
