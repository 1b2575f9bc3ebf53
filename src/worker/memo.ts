/**
 * A function of a string, memoised in a table that starts over when full.
 * For work done per key a client chooses (its address, its Host header):
 * a keep-alive client repeats the same key request after request, and a
 * client sending endless new ones must not grow the worker's memory.
 * `compute` never returns undefined (that is the table's "not yet").
 */
export function memoBounded<V extends object | string | number | boolean | null>(
  compute: (key: string) => V,
  capacity: number,
): (key: string) => V {
  const table = new Map<string, V>();
  return (key) => {
    let value = table.get(key);
    if (value === undefined) {
      value = compute(key);
      if (table.size >= capacity) table.clear();
      table.set(key, value);
    }
    return value;
  };
}
