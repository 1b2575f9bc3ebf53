import type { CompressionSpec } from '../../config/types.js';

/** No compression and no precompressed siblings (error pages, directory lookups that only read). */
export const COMPRESSION_OFF: CompressionSpec = Object.freeze({
  enabled: false,
  algorithms: Object.freeze([]),
  precompressed: false,
  minLengthBytes: 0,
});
