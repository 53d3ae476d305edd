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
  // Snapshots mostly keep their order: look an item up by key only where it moved.
  let byKey: Map<string | number, T> | undefined;
  let same = previous.length === next.length;
  const merged = next.map((item, i) => {
    const k = key(item);
    let old = previous[i];
    if (old === undefined || key(old) !== k) {
      byKey ??= new Map(previous.map((p) => [key(p), p]));
      old = byKey.get(k);
    }
    const kept = old !== undefined && sameFields(old, item) ? old : item;
    if (kept !== previous[i]) same = false;
    return kept;
  });
  return same ? previous : merged;
}

/** Whether two flat records have the same fields with the same values (no arrays made). */
function sameFields(a: object, b: object): boolean {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let fields = 0;
  for (const k in ra) {
    if (!Object.hasOwn(ra, k)) continue;
    if (!Object.hasOwn(rb, k) || !Object.is(ra[k], rb[k])) return false;
    fields += 1;
  }
  for (const k in rb) if (Object.hasOwn(rb, k)) fields -= 1;
  return fields === 0;
}
