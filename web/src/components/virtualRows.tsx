/**
 * Long tables keep only the rows near the view in the DOM (`@tanstack/react-virtual`): a fleet
 * of 10,000 devices renders a few dozen rows, and a push or a scroll touches only those.
 *
 * Short tables (up to {@link VIRTUAL_FROM} rows, the common case) render every row: the browser's
 * find-in-page and a screen reader's table navigation then see the whole table. Long ones are
 * still one `<table>`: spacer rows above and below stand in for the rows not rendered, and
 * `aria-rowcount`/`aria-rowindex` tell assistive technology where a row is.
 *
 * @packageDocumentation
 */

import { useVirtualizer } from "@tanstack/react-virtual";
import type { ReactNode, RefObject } from "react";

/** From this many rows on, a table renders only the rows near the view. */
export const VIRTUAL_FROM = 200;

/** Rows rendered beyond each edge of the view, so a fast scroll rarely shows a blank. */
const OVERSCAN = 12;
/**
 * The rendered rows start and end on multiples of this: while a scroll stays within a chunk the
 * table's rows do not change, so the browser only moves them instead of laying the table out
 * again on every frame.
 */
const CHUNK = 16;

/** The indexes to render for the visible `range`, widened by the overscan to whole chunks. */
export function chunkedRange({ startIndex, endIndex, overscan, count }: { startIndex: number; endIndex: number; overscan: number; count: number }): number[] {
  if (count === 0) return [];
  const from = Math.max(0, Math.floor((startIndex - overscan) / CHUNK) * CHUNK);
  const to = Math.min(count - 1, Math.ceil((endIndex + overscan + 1) / CHUNK) * CHUNK - 1);
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

export interface VirtualRows {
  /** Indexes of the rows to render, in order. */
  indexes: number[];
  /** Whether only some rows are rendered. */
  virtual: boolean;
  /** Ref callback for a rendered row's element (it must carry `data-index`): measures it. */
  measure: (element: Element | null) => void;
  /** Height of the rows not rendered above / below the rendered ones, in px. */
  before: number;
  after: number;
}

/**
 * Which of `count` rows to render in the scroll box `scroller`, each about `estimate` px high;
 * `keyOf` keeps a row's measured height with it when rows move.
 */
export function useVirtualRows(count: number, scroller: RefObject<HTMLElement | null>, estimate: number, keyOf: (index: number) => string | number): VirtualRows {
  const virtual = count >= VIRTUAL_FROM;
  // The dashboard is not built with React Compiler, and nothing here memoises the functions
  // the virtualizer returns: its warning about such memoisation does not apply.
  // eslint-disable-next-line react-hooks/incompatible-library
  const virtualizer = useVirtualizer({
    count,
    enabled: virtual,
    getScrollElement: () => scroller.current,
    estimateSize: () => estimate,
    getItemKey: keyOf,
    overscan: OVERSCAN,
    rangeExtractor: chunkedRange,
    useFlushSync: false,
  });
  if (!virtual) {
    return { indexes: Array.from({ length: count }, (_, i) => i), virtual, measure: noMeasure, before: 0, after: 0 };
  }
  const items = virtualizer.getVirtualItems();
  const first = items[0];
  const last = items.at(-1);
  return {
    indexes: items.map((item) => item.index),
    virtual,
    measure: virtualizer.measureElement,
    before: first ? first.start : 0,
    after: last ? Math.max(0, virtualizer.getTotalSize() - last.end) : 0,
  };
}

function noMeasure(): void {}

/** A row standing in for `height` px of rows not rendered; nothing when there are none. */
export function SpacerRow({ height, columns }: { height: number; columns: number }): ReactNode {
  if (height <= 0) return null;
  return (
    <tr aria-hidden="true" className="table__spacer">
      <td colSpan={columns} style={{ height, padding: 0, border: 0 }} />
    </tr>
  );
}
