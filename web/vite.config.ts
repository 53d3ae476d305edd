import { defineConfig } from "vitest/config";

// The dashboard is built to web/dist, which pulse-web serves (PULSE_WEB_ROOT) under a strict
// Content Security Policy: no inline script or style, so nothing is inlined into index.html.
// `npm run dev` serves it with hot reload and sends /api to a running pulse-web
// (PULSE_WEB_URL, default that of `make up`); the page then connects to the gateways that
// pulse-web names in its tickets.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    assetsInlineLimit: 0,
    rollupOptions: {
      // "use client" marks React Server Components boundaries, which a browser-only bundle
      // has none of: the directive is meaningless here, not an error.
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE" || (warning.code === "SOURCEMAP_ERROR" && warning.message.includes("@tanstack"))) return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: { "/api": process.env.PULSE_WEB_URL ?? "http://127.0.0.1:8080" },
  },
  test: {
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    environment: "node",
  },
});
