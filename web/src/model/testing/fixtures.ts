/** Messages shaped as the contract's examples, for the dashboard's unit tests. */

import type { Alert, AlertsMessage, EventMessage, FleetDevice, FleetMessage } from "../../client/index.js";

export function alert(id: number, patch: Partial<Alert> = {}): Alert {
  return {
    alert_id: id,
    device_id: "dev-0001",
    site_id: "site-01",
    alert_type: "temp_high",
    severity: 2,
    summary: `alert ${id}`,
    status: "OPEN",
    created_at: "2026-11-22T09:59:58.12Z",
    ...patch,
  };
}

export function alertsMessage(alerts: Alert[], seq = 1, totalOpen = alerts.length): AlertsMessage {
  return { type: "alerts", tenant_id: "acme", seq, ts: "2026-11-22T10:00:00.503112Z", alerts, total_open: totalOpen };
}

export function device(id: string, patch: Partial<FleetDevice> = {}): FleetDevice {
  return { device_id: id, site_id: "site-01", status: "ONLINE", last_seen_at: "2026-11-22T10:00:00.9Z", battery_pct: 88.1, ...patch };
}

export function fleetMessage(devices: FleetDevice[], seq = 1): FleetMessage {
  const count = (s: FleetDevice["status"]) => devices.filter((d) => d.status === s).length;
  return {
    type: "fleet",
    tenant_id: "acme",
    seq,
    ts: "2026-11-22T10:00:01.002314Z",
    counts: { total: devices.length, online: count("ONLINE"), stale: count("STALE"), offline: count("OFFLINE") },
    devices,
  };
}

/** An `alert:opened` event of the `activity` topic, as the database emits it. */
export function activityEvent(seq: number, patch: Partial<EventMessage> = {}, payload: Record<string, unknown> = {}): EventMessage {
  return {
    type: "event",
    tenant_id: "acme",
    topic: "activity",
    event: "alert:opened",
    seq,
    ts: "2026-11-22T10:00:02.25Z",
    payload: {
      alert_id: 1000 + seq,
      device_id: "dev-0001",
      site_id: "site-01",
      alert_type: "temp_high",
      severity: 2,
      summary: `alert ${1000 + seq}`,
      status: "OPEN",
      ...payload,
    },
    ...patch,
  };
}

/** The body of `GET /api/v2/events?topic=activity` listing events `seqs` (ascending). */
export function activityPage(seqs: number[], lastSeq = seqs.length > 0 ? Math.max(...seqs) : 0): { topic: string; events: EventMessage[]; last_seq: number } {
  return { topic: "activity", events: seqs.map((seq) => activityEvent(seq)), last_seq: lastSeq };
}
