import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { ErrorBoundary } from "./ErrorBoundary.js";

describe("ErrorBoundary", () => {
  it("turns a thrown value into state", () => {
    expect(ErrorBoundary.getDerivedStateFromError(new Error("boom")).error.message).toBe("boom");
    expect(ErrorBoundary.getDerivedStateFromError("text").error.message).toBe("text");
  });

  it("renders its children until something fails, then an error card naming the widget", () => {
    const boundary = new ErrorBoundary({ label: "Open alerts", children: <p>table</p> });
    expect(renderToStaticMarkup(<>{boundary.render()}</>)).toBe("<p>table</p>");
    boundary.state = { error: new Error("<b>bad</b> data") };
    const html = renderToStaticMarkup(<>{boundary.render()}</>);
    expect(html).toContain('role="alert"');
    expect(html).toContain("Open alerts stopped working");
    expect(html).toContain("&lt;b&gt;bad&lt;/b&gt; data");
    expect(html).toContain(">Retry</button>");
  });
});
