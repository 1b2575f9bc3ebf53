/**
 * Sizes as the config writes them: "512M", "2G", "64K" or a plain number of
 * bytes (1024-based, as the sandbox helper reads them), and back, so a size
 * is printed as an operator would write it, never as 1.0995e+23.
 */

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

export function parseSize(value: number | string): number {
  if (typeof value === 'number') return value;
  const match = /^([1-9][0-9]*)([KMGT]?)$/.exec(value);
  if (!match) throw new Error(`not a size: ${value}`);
  return Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? 1);
}

/** "512M", "1.5G", "7.6T": the largest unit that leaves at least 1, one decimal when it is not whole. */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const size = SIZE_UNITS[unit]!;
    if (bytes >= size) {
      const value = bytes / size;
      return `${Number.isInteger(value) ? value : value.toFixed(1)}${unit}`;
    }
  }
  return `${bytes} bytes`;
}
