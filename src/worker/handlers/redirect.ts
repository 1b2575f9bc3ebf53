import type { BackendSpec } from '../../config/types.js';
import type { RequestHandler } from './types.js';

/** `backend.type = "redirect"`: send every request to target (+ its path and query). */
export function createRedirectHandler(backend: Extract<BackendSpec, { type: 'redirect' }>): RequestHandler {
  return {
    handle(req, res) {
      // Only an origin-form target is appended; anything else would let the
      // request choose where the redirect points.
      const url = req.url ?? '/';
      const location = backend.target + (backend.preservePath && url.startsWith('/') ? url : '/');
      res.writeHead(backend.status, { Location: location, 'Content-Length': 0, 'Cache-Control': 'no-store' });
      res.end();
    },
  };
}
