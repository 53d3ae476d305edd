import { expect } from "vitest";

/**
 * Asserts that `html` shows the error banner above the table `tableTestId`, which keeps the
 * last valid update on show.
 */
export function expectBannerAboveTable(html: string, tableTestId: string): void {
  const banner = html.indexOf('data-testid="error-card"');
  const table = html.indexOf(`data-testid="${tableTestId}"`);
  expect(banner).toBeGreaterThanOrEqual(0);
  expect(table).toBeGreaterThan(banner);
  expect(html).toContain("Showing the last valid update until the next valid update.");
}
