import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

// The browser tests: a real stack and a real headless Chromium (scripts/test-web.sh runs them
// after the unit tests and the build). One file at a time, each with a stack of its own; tests
// in order. The artifacts of an earlier run are cleared once, before the first file.
export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["e2e/**/*.e2e.ts"],
    globalSetup: ["e2e/globalSetup.ts"],
    environment: "node",
    pool: "forks",
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["verbose"],
  },
});
