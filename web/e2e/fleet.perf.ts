/**
 * How the dashboard holds up under a big tenant, measured in Chromium with a performance trace:
 * 10,000 devices and 1,000 open alerts all listed, one fleet push a second. Not a test (nothing
 * here passes or fails on timing): it prints the figures docs/BENCHMARKS.md quotes and writes the
 * trace and the figures to test-artifacts/browser/ (`npm run perf:fleet`; with
 * `PULSE_PERF_LIST=capped`, under the poller's default caps instead of every item listed).
 *
 * Phases, each delimited by a `performance.mark` so the trace can be cut by them:
 * - `steady`: the page just shows the dashboard while pushes arrive;
 * - `scroll-devices` / `scroll-alerts`: a table is scrolled 40 px a frame (2,400 px/s at 60 fps);
 * - `filter`: a device id is typed into the device filter, a key every 150 ms, then cleared.
 * For each: main-thread tasks over 50 ms (from the trace's `RunTask` events on the renderer's main
 * thread), the longest task, and for the scroll phases the frame rate and the slowest frame.
 */

import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";

import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";

import { BIG_DEVICES, churnFleet, startBigFleetStack } from "./bigFleet.js";
import { launchChromium, openLoggedIn, stat } from "./browser.js";
import { artifact, type Stack } from "./stack.js";

/** `PULSE_PERF_LIST=capped` measures with the poller's default caps instead of every item listed. */
const LIST_ALL = process.env.PULSE_PERF_LIST !== "capped";
const STEADY_MS = 10_000;
const SCROLL_MS = 5_000;
const LONG_TASK_US = 50_000;

let stack: Stack;
let browser: Browser;
let stopChurn: (() => Promise<void>) | undefined;

beforeAll(async () => {
  stack = await startBigFleetStack({ listAll: LIST_ALL });
  stopChurn = churnFleet(stack, { offline: !LIST_ALL });
  browser = await launchChromium();
}, 300_000);

afterAll(async () => {
  await stopChurn?.();
  await browser?.close().catch(() => undefined);
  await stack?.stop();
});

interface Frames {
  frames: number;
  fps: number;
  p95Ms: number;
  worstMs: number;
}

/** Scrolls the scroll box `testId` by 40 px a frame for `ms`, wrapping at the end; frame figures. */
async function scrollFor(page: Page, testId: string, ms: number): Promise<Frames> {
  return page.evaluate(
    ({ testId, ms }) =>
      new Promise<Frames>((resolve) => {
        const box = document.querySelector<HTMLElement>(`[data-testid="${testId}"]`);
        if (!box) throw new Error(`no ${testId}`);
        const stamps: number[] = [];
        const started = performance.now();
        const step = (t: number) => {
          stamps.push(t);
          if (t - started >= ms) {
            const gaps = stamps.slice(1).map((s, i) => s - stamps[i]!);
            gaps.sort((a, b) => a - b);
            resolve({
              frames: gaps.length,
              fps: gaps.length / ((stamps.at(-1)! - stamps[0]!) / 1000),
              p95Ms: gaps[Math.floor(gaps.length * 0.95)] ?? 0,
              worstMs: gaps.at(-1) ?? 0,
            });
            return;
          }
          box.scrollTop = box.scrollTop + box.clientHeight >= box.scrollHeight - 1 ? 0 : box.scrollTop + 40;
          requestAnimationFrame(step);
        };
        requestAnimationFrame(step);
      }),
    { testId, ms },
  );
}

const mark = (page: Page, name: string) => page.evaluate((n) => performance.mark(n), name);

interface TraceEvent {
  name: string;
  ph: string;
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: { name?: string };
}

interface Phase {
  phase: string;
  ms: number;
  fleetPushes: number;
  longTasks: number;
  longestTaskMs: number;
  frames?: Frames;
}

/** Main-thread tasks of the page's renderer between each pair of `<phase>:start`/`<phase>:end` marks. */
function tasksByPhase(trace: { traceEvents: TraceEvent[] }, phases: string[]): Map<string, number[]> {
  const events = trace.traceEvents;
  const mains = new Set(events.filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain").map((e) => `${e.pid}:${e.tid}`));
  const marks = new Map(events.filter((e) => e.name.includes(":start") || e.name.includes(":end")).map((e) => [e.name, e.ts]));
  const tasks = events.filter((e) => e.ph === "X" && e.name === "RunTask" && mains.has(`${e.pid}:${e.tid}`));
  const result = new Map<string, number[]>();
  for (const phase of phases) {
    const from = marks.get(`${phase}:start`);
    const to = marks.get(`${phase}:end`);
    if (from === undefined || to === undefined) throw new Error(`the trace has no marks for ${phase}`);
    result.set(
      phase,
      tasks.filter((t) => t.ts >= from && t.ts <= to).map((t) => t.dur ?? 0),
    );
  }
  return result;
}

it(
  `keeps the main thread and scrolling smooth with ${BIG_DEVICES.toLocaleString("en-US")} devices and a fleet push a second`,
  async () => {
    const dash = await openLoggedIn(browser, stack);
    const { page } = dash;
    await expect.poll(() => stat(page, "total"), { timeout: 30_000 }).toBe(BIG_DEVICES);
    await page.getByTestId("devices-table").locator("tbody tr[data-device-id]").first().waitFor();
    await page.waitForTimeout(3_000); // let start-up work settle before measuring
    // Chromium shares the machine with the stack: how busy it already was says how far to trust a run.
    const loadAverage = Math.round(loadavg()[0]! * 100) / 100;

    await browser.startTracing(page, {
      categories: ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline", "blink.user_timing"],
    });
    const phases: Phase[] = [];
    const run = async (phase: string, work: () => Promise<Frames | void>) => {
      const pushesBefore = dash.watch.received("fleet");
      const started = Date.now();
      await mark(page, `${phase}:start`);
      const frames = await work();
      await mark(page, `${phase}:end`);
      phases.push({ phase, ms: Date.now() - started, fleetPushes: dash.watch.received("fleet") - pushesBefore, longTasks: 0, longestTaskMs: 0, ...(frames ? { frames } : {}) });
    };
    await run("steady", () => page.waitForTimeout(STEADY_MS));
    await run("scroll-devices", () => scrollFor(page, "devices-scroll", SCROLL_MS));
    await run("scroll-alerts", () => scrollFor(page, "alerts-scroll", SCROLL_MS));
    await run("filter", async () => {
      const filter = page.getByTestId("device-filter");
      await filter.pressSequentially("dev-0999", { delay: 150 });
      await filter.fill("");
      await page.waitForTimeout(1_000);
    });
    const buffer = await browser.stopTracing();
    writeFileSync(artifact(`fleet-trace-${LIST_ALL ? "all" : "capped"}.json`), buffer);

    const tasks = tasksByPhase(JSON.parse(buffer.toString("utf8")) as { traceEvents: TraceEvent[] }, phases.map((p) => p.phase));
    for (const p of phases) {
      const durations = tasks.get(p.phase) ?? [];
      p.longTasks = durations.filter((d) => d > LONG_TASK_US).length;
      p.longestTaskMs = Math.round(Math.max(0, ...durations) / 100) / 10;
    }
    const rendered = await page.getByTestId("devices-table").locator("tbody tr").count();
    const report = { devices: BIG_DEVICES, listed: LIST_ALL ? "all" : "capped", renderedDeviceRows: rendered, loadAverage, phases };
    writeFileSync(artifact(`fleet-perf-${report.listed}.json`), `${JSON.stringify(report, null, 2)}\n`);
    console.log(
      [
        `devices ${BIG_DEVICES} (${report.listed} listed), device rows in the DOM ${rendered}, load average at the start ${loadAverage}`,
        "phase            ms     pushes  tasks>50ms  longest(ms)  fps    p95 frame(ms)  worst frame(ms)",
        ...phases.map((p) =>
          [
            p.phase.padEnd(16),
            String(p.ms).padEnd(6),
            String(p.fleetPushes).padEnd(7),
            String(p.longTasks).padEnd(11),
            String(p.longestTaskMs).padEnd(12),
            (p.frames ? p.frames.fps.toFixed(1) : "-").padEnd(6),
            (p.frames ? p.frames.p95Ms.toFixed(1) : "-").padEnd(14),
            p.frames ? p.frames.worstMs.toFixed(1) : "-",
          ].join(" "),
        ),
      ].join("\n"),
    );
    await dash.context.close();
  },
  240_000,
);
