import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { LiveRefusedCard } from "./LiveRefusedNotice.js";

describe("LiveRefusedCard", () => {
  it("says on the page, not only in a tooltip, that live updates are refused, how old the data is, and offers a retry", () => {
    const html = renderToStaticMarkup(<LiveRefusedCard asOf={new Date(2026, 10, 22, 10, 0, 10).getTime()} onRetry={() => {}} />);
    expect(html).toContain('role="alert"');
    expect(html).toContain("Live updates refused for this session");
    expect(html).toContain("nothing on this page is updating. What is shown is as of 10:00:10.");
    expect(html).toContain('data-testid="live-refused"');
    expect(html).toMatch(/<button[^>]*>Retry<\/button>/);
    expect(renderToStaticMarkup(<LiveRefusedCard asOf={null} onRetry={() => {}} />)).not.toContain("as of");
  });
});
