import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

// The dashboard's performance runs (`npm run perf:fleet`): a real stack and a real headless
// Chromium, as the browser tests, but they measure instead of asserting. Not part of `make test`.
export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["e2e/**/*.perf.ts"],
    environment: "node",
    pool: "forks",
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 300_000,
    reporters: ["verbose"],
  },
});
