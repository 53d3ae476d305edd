import { describe, expect, it } from "vitest";

import { reuseUnchanged } from "./reuse.js";

const key = (r: { id: string }) => r.id;

describe("reuseUnchanged", () => {
  it("keeps the previous object of every item whose fields are all the same", () => {
    const previous = [
      { id: "a", n: 1, at: null as string | null },
      { id: "b", n: 2, at: "t" },
    ];
    const next = reuseUnchanged(previous, [{ id: "b", n: 3, at: "t" }, { id: "a", n: 1, at: null }, { id: "c", n: 0, at: null }], key);
    expect(next[0]).not.toBe(previous[1]); // changed
    expect(next[0]?.n).toBe(3);
    expect(next[1]).toBe(previous[0]); // unchanged, moved
    expect(next[2]?.id).toBe("c"); // new
    expect(next).not.toBe(previous);
  });

  it("returns the previous list itself when nothing changed, not even the order", () => {
    const previous = [{ id: "a", n: 1 }, { id: "b", n: 2 }];
    expect(reuseUnchanged(previous, [{ id: "a", n: 1 }, { id: "b", n: 2 }], key)).toBe(previous);
    expect(reuseUnchanged(previous, [{ id: "b", n: 2 }, { id: "a", n: 1 }], key)).not.toBe(previous);
    expect(reuseUnchanged(previous, [{ id: "a", n: 1 }], key)).not.toBe(previous);
  });

  it("treats an added or missing field as a change", () => {
    const previous = [{ id: "a", n: 1 } as { id: string; n: number; extra?: number }];
    expect(reuseUnchanged(previous, [{ id: "a", n: 1, extra: 2 }], key)[0]).not.toBe(previous[0]);
    expect(reuseUnchanged(undefined, previous, key)).toBe(previous);
  });
});
