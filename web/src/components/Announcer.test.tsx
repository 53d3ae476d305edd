import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { LiveSession } from "../app/session.js";
import { Shell } from "../app/App.js";
import { LiveRegion } from "./Announcer.js";

describe("LiveRegion", () => {
  it("renders each announcement as its own node, named by its id", () => {
    expect(renderToStaticMarkup(<LiveRegion announcement={null} />)).toBe('<div class="visually-hidden" aria-live="polite" data-testid="announcer"></div>');
    const first = renderToStaticMarkup(<LiveRegion announcement={{ id: 1, text: "1 new critical alert" }} />);
    const again = renderToStaticMarkup(<LiveRegion announcement={{ id: 2, text: "1 new critical alert" }} />);
    expect(first).toContain('<span data-announcement="1">1 new critical alert</span>');
    expect(again).toContain('<span data-announcement="2">1 new critical alert</span>');
  });
});

describe("Shell", () => {
  it("mounts the announcer for every page, once", () => {
    const html = renderToStaticMarkup(
      <LiveSession me={{ email: "a@example.com", tenant_id: "acme", role: "viewer" }} onLogout={async () => {}}>
        <Shell>
          <p>any page</p>
        </Shell>
      </LiveSession>,
    );
    expect(html.match(/data-testid="announcer"/g)).toHaveLength(1);
    expect(html).toContain("<p>any page</p>");
  });
});
