/** Messages shaped as the contract's examples, for the dashboard's unit tests. */

import type { Alert, AlertsMessage, FleetDevice, FleetMessage } from "../../client/index.js";

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
