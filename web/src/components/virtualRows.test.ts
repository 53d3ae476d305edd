import { describe, expect, it } from "vitest";

import { chunkedRange } from "./virtualRows.js";

describe("chunkedRange", () => {
  it("widens the visible rows by the overscan to whole chunks of 16", () => {
    const rows = chunkedRange({ startIndex: 40, endIndex: 60, overscan: 12, count: 10_000 });
    expect(rows[0]).toBe(16); // 40 - 12 = 28, down to 16
    expect(rows.at(-1)).toBe(79); // 60 + 12 = 72, up to the end of the chunk 64–79
    expect(rows).toHaveLength(64);
  });

  it("keeps the same rows while a scroll stays within a chunk", () => {
    const at = (start: number) => chunkedRange({ startIndex: start, endIndex: start + 20, overscan: 12, count: 10_000 });
    expect(at(33)).toEqual(at(40));
    expect(at(44)).not.toEqual(at(40));
  });

  it("stays within the rows there are", () => {
    expect(chunkedRange({ startIndex: 0, endIndex: 5, overscan: 12, count: 10 })).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(chunkedRange({ startIndex: 0, endIndex: 0, overscan: 12, count: 0 })).toEqual([]);
  });
});
