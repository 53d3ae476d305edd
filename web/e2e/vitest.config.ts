import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

// The browser tests: a real stack and a real headless Chromium (scripts/test-web.sh runs them
// after the unit tests and the build). Each file has a stack and a browser of its own, its
// tests in order; two files at a time, since they mostly wait on what they staged (on 2
// cores: 110 s instead of 180 s one file at a time). The artifacts of an earlier run are
// cleared once, before the first file.
export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["e2e/**/*.e2e.ts"],
    globalSetup: ["e2e/globalSetup.ts"],
    environment: "node",
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["verbose"],
  },
});
