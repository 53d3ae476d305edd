/**
 * Checks every message and REST body before the dashboard renders it.
 *
 * Pushes and the REST bodies shaped like them (`/api/v2/alerts`, `/api/v2/fleet`) are checked
 * against the contract's schemas, compiled from proto/schemas at build time; what the schemas
 * cannot say (counts that add up) and the REST-only bodies are checked by hand here. A widget
 * never renders a half-broken message: one that fails becomes an error card in the one widget
 * that uses it. Unknown extra fields are allowed (the contract may add fields within `v1`).
 *
 * @packageDocumentation
 */

import { partProblem, schemaProblem } from "../client/wire/validate.js";
import type {
  Alert,
  AlertsMessage,
  DeviceStatus,
  FleetDevice,
  FleetMessage,
} from "../client/index.js";

/** A checked value, or why it was refused. */
export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

/** One reading of a device, as in telemetry pushes and `GET /api/v2/devices/{id}/telemetry`. */
export interface Reading {
  timestamp: string;
  /** Milliseconds since the epoch, parsed from `timestamp`. */
  at: number;
  metrics: Record<string, unknown>;
}

/** `GET /api/v2/devices/{id}` without the fields the dashboard does not use. */
export interface DeviceDetail {
  device_id: string;
  site_id: string;
  status: DeviceStatus;
  last_seen_at: string | null;
  battery_pct: number | null;
  latest: Reading | null;
}

/**
 * One event of the `activity` topic (an alert opened, acknowledged or closed), as the activity
 * widget shows it. Payload fields an event does not carry are `null`.
 */
export interface ActivityEntry {
  seq: number;
  /** When the event was published. */
  ts: string;
  /** Milliseconds since the epoch, parsed from `ts`. */
  at: number;
  /** `alert:opened`, `alert:acknowledged`, `alert:closed`, or a later one. */
  event: string;
  alertId: number | null;
  deviceId: string | null;
  siteId: string | null;
  alertType: string | null;
  severity: number | null;
  /** Free text from whoever raised the alert: render it as text only. */
  summary: string | null;
  status: string | null;
}

/** `GET /api/v2/events` for one topic: its events in ascending `seq`, and its newest `seq`. */
export interface EventsPage {
  events: ActivityEntry[];
  /** The topic's newest `seq` when the page was read; 0 when it has no events. */
  lastSeq: number;
  /** Why the first of the page's events left out was malformed; `null` when none was. */
  malformed: string | null;
}

/** The logged-in user, from `POST /api/v2/login` and `GET /api/v2/me`. */
export interface Me {
  email: string;
  tenant_id: string;
  role: string;
}

type Obj = Record<string, unknown>;

/** Thrown inside the checkers; turned into `{ ok: false }` by {@link check}. */
class Invalid extends Error {}

function fail(path: string, expected: string): never {
  throw new Invalid(`${path} must be ${expected}`);
}

function object(value: unknown, path: string): Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(path, "an object");
  return value as Obj;
}

function array(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail(path, "an array");
  return value;
}

function string(value: unknown, path: string): string {
  if (typeof value !== "string") fail(path, "a string");
  return value;
}

function integer(value: unknown, path: string, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    fail(path, `an integer ≥ ${min}`);
  }
  return value;
}

function finite(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) fail(path, "a number");
  return value;
}

/** Milliseconds of an RFC 3339 timestamp. */
function timestamp(value: unknown, path: string): number {
  const text = string(value, path);
  const at = Date.parse(text);
  if (!/^\d{4}-\d\d-\d\dT/.test(text) || Number.isNaN(at)) fail(path, "an RFC 3339 timestamp");
  return at;
}

function nullable<T>(value: unknown, path: string, inner: (v: unknown, p: string) => T): T | null {
  return value === null || value === undefined ? null : inner(value, path);
}

const STATUSES: ReadonlySet<string> = new Set(["ONLINE", "STALE", "OFFLINE"]);

function deviceStatus(value: unknown, path: string): DeviceStatus {
  if (typeof value !== "string" || !STATUSES.has(value)) fail(path, "ONLINE, STALE or OFFLINE");
  return value as DeviceStatus;
}

function check<T>(parse: () => T): Checked<T> {
  try {
    return { ok: true, value: parse() };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, error: error.message };
    throw error;
  }
}

function fleetDevice(value: unknown, path: string): FleetDevice {
  const d = object(value, path);
  const lastSeen = nullable(d.last_seen_at, `${path}.last_seen_at`, (v, p) => (timestamp(v, p), v as string));
  return {
    device_id: string(d.device_id, `${path}.device_id`),
    site_id: string(d.site_id, `${path}.site_id`),
    status: deviceStatus(d.status, `${path}.status`),
    last_seen_at: lastSeen,
    battery_pct: nullable(d.battery_pct, `${path}.battery_pct`, finite),
  };
}

function reading(value: unknown, path: string): Reading {
  const r = object(value, path);
  return {
    timestamp: r.timestamp as string,
    at: timestamp(r.timestamp, `${path}.timestamp`),
    metrics: object(r.metrics, `${path}.metrics`),
  };
}

function activityEntry(value: unknown, path: string, topic: string): ActivityEntry {
  const m = object(value, path);
  if (m.type !== "event") fail(`${path}.type`, '"event"');
  if (m.topic !== topic) fail(`${path}.topic`, JSON.stringify(topic));
  const ts = string(m.ts, `${path}.ts`);
  const at = timestamp(ts, `${path}.ts`);
  // Other events may come to the topic with other payloads: every field is optional, but one
  // that is there must have its type.
  const p = m.payload === null || m.payload === undefined ? {} : object(m.payload, `${path}.payload`);
  return {
    seq: integer(m.seq, `${path}.seq`),
    ts,
    at,
    event: string(m.event, `${path}.event`),
    alertId: nullable(p.alert_id, `${path}.payload.alert_id`, integer),
    deviceId: nullable(p.device_id, `${path}.payload.device_id`, string),
    siteId: nullable(p.site_id, `${path}.payload.site_id`, string),
    alertType: nullable(p.alert_type, `${path}.payload.alert_type`, string),
    severity: nullable(p.severity, `${path}.payload.severity`, integer),
    summary: nullable(p.summary, `${path}.payload.summary`, string),
    status: nullable(p.status, `${path}.payload.status`, string),
  };
}

/** Checks an event message of `topic` as the activity widget reads it. */
export function checkActivityEvent(value: unknown, topic: string): Checked<ActivityEntry> {
  return check(() => activityEntry(value, "event", topic));
}

/**
 * Checks the body of `GET /api/v2/events?topic=<topic>`, down to every event. An event that is
 * malformed (a payload field of another type, written by SQL) is left out and named, as a live
 * one is: refusing the whole page for it would leave the feed empty until it ages out.
 */
export function checkEventsPage(value: unknown, topic: string): Checked<EventsPage> {
  return check(() => {
    const body = object(value, "body");
    if (body.topic !== topic) fail("topic", JSON.stringify(topic));
    const events: ActivityEntry[] = [];
    let malformed: string | null = null;
    array(body.events, "events").forEach((e, i) => {
      const entry = check(() => activityEntry(e, `events[${i}]`, topic));
      if (entry.ok) events.push(entry.value);
      else malformed ??= entry.error;
    });
    return { events, lastSeq: integer(body.last_seq, "last_seq"), malformed };
  });
}

/** Checks a value against the contract's schema of `type` (generated from proto/schemas). */
function matches<T>(type: "alerts" | "fleet", value: unknown): T {
  const problem = schemaProblem(type, value);
  if (problem) throw new Invalid(problem);
  return value as T;
}

/** Checks an `alerts` message down to every alert. */
export function checkAlerts(value: unknown): Checked<AlertsMessage> {
  return check(() => {
    const m = matches<AlertsMessage>("alerts", value);
    return { ...m, total_open: Math.max(m.total_open, m.alerts.length) };
  });
}

/** Checks a `fleet` message down to every device; the counts must add up. */
export function checkFleet(value: unknown): Checked<FleetMessage> {
  return check(() => {
    const m = matches<FleetMessage>("fleet", value);
    const { total, online, stale, offline } = m.counts;
    if (online + stale + offline !== total) fail("counts.total", "online + stale + offline");
    return m;
  });
}

/** Checks a `telemetry` message; returns its reading. */
export function checkTelemetry(value: unknown, deviceId: string): Checked<Reading> {
  return check(() => {
    const m = object(value, "message");
    if (m.type !== "telemetry") fail("type", '"telemetry"');
    if (m.device_id !== deviceId) fail("device_id", JSON.stringify(deviceId));
    return reading(m.data, "data");
  });
}

/** Checks the body of `GET /api/v2/devices/{id}/telemetry` (oldest first). */
export function checkReadingPage(value: unknown): Checked<Reading[]> {
  return check(() => array(object(value, "body").items, "items").map((r, i) => reading(r, `items[${i}]`)));
}

/** Checks the body of `GET /api/v2/alerts`: its alerts, newest first, as the contract shapes them. */
export function checkAlertPage(value: unknown): Checked<Alert[]> {
  return check(() => {
    const items = array(object(value, "body").items, "items");
    // The page lists alerts as an `alerts` message does: the same schema checks them.
    const problem = partProblem("alerts", { alerts: items });
    if (problem) throw new Invalid(problem.replace(/^alerts/, "items"));
    return items as Alert[];
  });
}

/** Checks the body of `GET /api/v2/devices/{id}`. */
export function checkDeviceDetail(value: unknown): Checked<DeviceDetail> {
  return check(() => {
    const d = fleetDevice(value, "device");
    const body = value as Obj;
    return { ...d, latest: nullable(body.latest, "latest", reading) };
  });
}

/** Checks the body of `GET /api/v2/me` and `POST /api/v2/login`. */
export function checkMe(value: unknown): Checked<Me> {
  return check(() => {
    const m = object(value, "body");
    return { email: string(m.email, "email"), tenant_id: string(m.tenant_id, "tenant_id"), role: string(m.role, "role") };
  });
}
