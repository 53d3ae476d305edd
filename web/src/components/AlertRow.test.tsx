import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { alert } from "../model/testing/fixtures.js";
import { AlertRow } from "./AlertRow.js";

const HOSTILE = "<img src=x onerror=alert(1)>";

function render(open: boolean, isNew = false): string {
  return renderToStaticMarkup(
    <table>
      <tbody>
        <AlertRow alert={alert(9, { summary: HOSTILE, device_id: "dev-0001", severity: 4 })} isNew={isNew} open={open} onToggle={() => {}} />
      </tbody>
    </table>,
  );
}

describe("AlertRow", () => {
  it("renders a hostile summary as escaped text, in the row and in its details", () => {
    for (const html of [render(false), render(true)]) {
      expect(html).not.toContain("<img");
      expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    }
    expect(render(true).match(/&lt;img/g)).toHaveLength(3); // title attribute, cell, details
  });

  it("marks new rows and open rows with classes, and links the device", () => {
    const html = render(true, true);
    expect(html).toContain('class="alert-row is-new is-open"');
    expect(html).toContain('aria-expanded="true"');
    expect(html).toContain('href="/devices/dev-0001"');
    expect(html).toContain("Critical");
    expect(render(false)).not.toContain("alert-details");
    expect(render(false)).toContain('aria-expanded="false"');
  });
});
