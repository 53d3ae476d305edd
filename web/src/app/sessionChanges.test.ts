import { describe, expect, it, vi } from "vitest";

import { announceSessionChange, reportSessionChange, watchSessionChanges } from "./sessionChanges.js";

describe("session changes", () => {
  it("tell the other tabs whether this one logged out, so that theirs do not keep the last user's page for the next", async () => {
    const heard = vi.fn();
    const stop = watchSessionChanges(heard);
    try {
      announceSessionChange({ loggedOut: true });
      announceSessionChange();
      await vi.waitFor(() => expect(heard).toHaveBeenCalledTimes(2));
      expect(heard.mock.calls).toEqual([[{ loggedOut: true }], [{ loggedOut: false }]]);
      // A ticket naming another user is no logout.
      reportSessionChange();
      expect(heard).toHaveBeenLastCalledWith({ loggedOut: false });
    } finally {
      stop();
    }
  });
});
