/**
 * Structural sharing for pushed snapshots: every push is parsed into new objects, but most of
 * them equal the ones already shown. Keeping the old object where nothing changed lets memoised
 * rows skip rendering, so a push that changes 20 devices of 10,000 re-renders 20 rows.
 *
 * @packageDocumentation
 */

/**
 * `next`, with each item that equals the item of `previous` with the same key replaced by that
 * previous object; `previous` itself when every item and the order are unchanged. Items are
 * flat records (every field a primitive), compared field by field.
 */
export function reuseUnchanged<T extends object>(previous: T[] | undefined, next: T[], key: (item: T) => string | number): T[] {
  if (!previous || previous.length === 0) return next;
  const byKey = new Map<string | number, T>();
  for (const item of previous) byKey.set(key(item), item);
  let same = previous.length === next.length;
  const merged = next.map((item, i) => {
    const old = byKey.get(key(item));
    const kept = old !== undefined && sameFields(old, item) ? old : item;
    if (kept !== previous[i]) same = false;
    return kept;
  });
  return same ? previous : merged;
}

function sameFields(a: object, b: object): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return ka.every((k) => Object.is(ra[k], rb[k]));
}
