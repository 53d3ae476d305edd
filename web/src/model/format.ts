/**
 * Text for the dashboard: relative times, severities, metric values, the connection badge.
 * Everything here returns plain strings; React renders them as text.
 *
 * @packageDocumentation
 */

import { DEFAULT_FALLBACK_INTERVAL_MS, type ConnectionStatus, type SubscriptionStatus } from "../client/index.js";
import { dataAsOf, fallbackFailing, initialFreshness, type Freshness } from "./freshness.js";

/**
 * "just now", "10 s ago", "4 min ago", "3 h ago", "2 d ago"; "never" for null. Seconds go in
 * steps of 5: a table of recent times then changes its text every 5 s, not every second.
 */
export function ago(timestamp: string | null, now: number): string {
  if (timestamp === null) return "never";
  const at = Date.parse(timestamp);
  if (Number.isNaN(at)) return "—";
  const seconds = Math.max(0, Math.floor((now - at) / 1000));
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds - (seconds % 5)} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/**
 * "98 % of fleet": `part` of `total` in whole percent, but never 0 % for some or 100 % for not
 * all ("<1 %", ">99 %"): one stale device in 300 is not none. Empty for an empty fleet.
 */
export function fleetShare(part: number, total: number): string {
  if (total <= 0) return "";
  const percent = Math.round((part / total) * 100);
  const shown = part > 0 && percent === 0 ? "<1" : part < total && percent === 100 ? ">99" : String(percent);
  return `${shown} % of fleet`;
}

/** "2026-11-22 10:00:00" in local time, for titles and detail rows. */
export function dateTime(timestamp: string | null): string {
  if (timestamp === null) return "never";
  const d = new Date(timestamp);
  if (Number.isNaN(d.getTime())) return timestamp;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "10:00:05" in local time. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A severity's label and tone: 4+ critical, 3 major, 2 minor, 1 warning, 0 info. */
export function severity(level: number): { label: string; tone: "critical" | "major" | "minor" | "warning" | "info" } {
  if (level >= 4) return { label: "Critical", tone: "critical" };
  if (level === 3) return { label: "Major", tone: "major" };
  if (level === 2) return { label: "Minor", tone: "minor" };
  if (level === 1) return { label: "Warning", tone: "warning" };
  return { label: "Info", tone: "info" };
}

/** A metric value as text: numbers with at most 2 decimals, other JSON as JSON. */
export function metricValue(value: unknown): string {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "—";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** `temp_c` → "temp (°C)", `humidity_pct` → "humidity (%)"; other names unchanged. */
export function metricLabel(key: string): string {
  const units: Record<string, string> = { c: "°C", pct: "%", dbm: "dBm", w: "W", v: "V", a: "A", kwh: "kWh", hz: "Hz" };
  const match = /^(.+)_([a-z]+)$/.exec(key);
  if (match && match[2]! in units) return `${match[1]!.replace(/_/g, " ")} (${units[match[2]!]})`;
  return key.replace(/_/g, " ");
}

/** What the header's connection badge says and its tone. */
export interface ConnectionBadge {
  label: string;
  tone: "live" | "warn" | "down";
  detail: string;
  /** While REST polling runs: "REST fallback", or "REST fallback failing since 10:00:45". */
  fallback: string | null;
  /** The fallback runs and its newest poll failed. */
  failing: boolean;
  /** While the connection is not live, how old the data on show is: "as of 10:00:15". */
  asOf: string | null;
}

/**
 * Live (green), Connecting… / Reconnecting… (amber), Offline (red), with a detail for the title.
 * While REST polling runs, it says whether the polls get through, and since when they fail: a
 * fallback failing at every try leaves the numbers frozen, and must not read as one that works.
 * Red then, but for a live connection (whose refused channels alone are polled): the badge stays
 * green, and the fallback part says it fails. Off live, it says how old the data is.
 */
export function connectionBadge(status: ConnectionStatus, now: number, freshness: Freshness = initialFreshness): ConnectionBadge {
  const failing = status.polling && fallbackFailing(freshness);
  const since = failing && freshness.failingSince !== null ? clockTime(freshness.failingSince) : "";
  const cause = freshness.pollError ? ` (${freshness.pollError})` : "";
  const fallback = !status.polling ? null : failing ? `REST fallback failing since ${since}` : "REST fallback";
  const asOfMs = status.state === "live" ? null : dataAsOf(freshness);
  const asOf = asOfMs === null ? null : `as of ${clockTime(asOfMs)}`;
  const polling = !status.polling
    ? ""
    : failing
      ? ` Polling over REST has failed since ${since}${cause}, and is tried again every ${DEFAULT_FALLBACK_INTERVAL_MS / 1000} s.`
      : " Showing data polled over REST until the live connection is back.";
  const age = asOf === null ? "" : ` The data shown is ${asOf}.`;
  const warn = failing ? "down" : "warn";
  switch (status.state) {
    case "live": {
      const refused = !status.polling
        ? ""
        : failing
          ? ` Channels the gateway refuses for now are polled over REST, which has failed since ${since}${cause}.`
          : " Channels the gateway refuses for now are polled over REST.";
      return { label: "Live", tone: "live", detail: `Connected: updates arrive as they happen.${refused}`, fallback, failing, asOf };
    }
    case "connecting":
      return { label: "Connecting…", tone: warn, detail: `Connecting to a gateway.${polling}${age}`, fallback, failing, asOf };
    case "reconnecting": {
      const next = status.nextAttemptAt === undefined ? "" : ` Next attempt in ${Math.max(0, Math.ceil((status.nextAttemptAt - now) / 1000))} s.`;
      return { label: "Reconnecting…", tone: warn, detail: `The live connection dropped.${next}${polling}${age}`, fallback, failing, asOf };
    }
    case "offline": {
      const why =
        status.reason === "network"
          ? "The browser reports no network."
          : status.reason === "forbidden"
            ? "The gateway refused this session."
            : "Not connected.";
      return { label: "Offline", tone: "down", detail: `${why}${polling}${age}`, fallback, failing, asOf };
    }
  }
}

/**
 * What a widget says while its live channel is not subscribed under a live connection: refused
 * for good, refused for now (REST polling refreshes it every `refreshSeconds`, or, when the
 * polls fail, since when, and how old its data is), or not answered yet.
 */
export function subscriptionStaleText(status: SubscriptionStatus, freshness: Freshness, refreshSeconds: number): string {
  if (status.state === "failed") return `Not updating: ${status.error?.message || status.error?.code || "refused"}`;
  if (status.state !== "retrying" && !status.error) return "Connecting…";
  const reason = `Not live: ${status.error?.code ? `${status.error.code}, ` : ""}retrying`;
  if (!fallbackFailing(freshness) || freshness.failingSince === null) return `${reason}; refreshed every ${refreshSeconds} s`;
  const asOf = freshness.lastPollAt === null ? "" : `, as of ${clockTime(freshness.lastPollAt)}`;
  return `${reason}; REST refresh failing since ${clockTime(freshness.failingSince)}${asOf}`;
}
