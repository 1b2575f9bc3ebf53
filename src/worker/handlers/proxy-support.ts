/**
 * The reverse proxy (handlers/proxy.ts: undici's pools, health checks) is
 * loaded only by a worker whose config has a proxy backend. undici is the
 * largest library a worker would otherwise load: ~14 MB of resident memory
 * per worker (bench/idle-memory.ts), which a server of static files and
 * redirects never uses.
 */
import { proxyBackends, type CompiledConfig } from '../../config/types.js';
import type { createProxyHandler } from './proxy.js';

export interface ProxySupport {
  readonly createProxyHandler: typeof createProxyHandler;
}

/** The proxy's code when `config` has a proxy backend, else null (nothing loaded). */
export async function loadProxySupport(config: CompiledConfig): Promise<ProxySupport | null> {
  if (proxyBackends(config).length === 0) return null;
  const { createProxyHandler } = await import('./proxy.js');
  return { createProxyHandler };
}
