/** Writes the tests make, as any writer would: plain SQL on the stack's database. */

import type pg from "pg";

export interface NewAlert {
  deviceId: string;
  siteId: string;
  summary: string;
  severity?: number;
  type?: string;
}

export async function insertAlert(db: pg.Client, tenant: string, alert: NewAlert): Promise<number> {
  const { rows } = await db.query<{ alert_id: string }>(
    `INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING alert_id`,
    [tenant, alert.deviceId, alert.siteId, alert.type ?? "test_alert", alert.severity ?? 2, alert.summary],
  );
  return Number(rows[0]!.alert_id);
}

export async function closeAlert(db: pg.Client, alertId: number): Promise<void> {
  await db.query(`UPDATE alerts SET status = 'CLOSED', closed_at = now() WHERE alert_id = $1`, [alertId]);
}

export async function insertDevice(db: pg.Client, tenant: string, deviceId: string, siteId: string): Promise<void> {
  await db.query(`INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) VALUES ($1, $2, $3, 77)`, [tenant, deviceId, siteId]);
}

/** One reading per entry; `secondsAgo` 0 is now. */
export async function insertReadings(
  db: pg.Client,
  tenant: string,
  deviceId: string,
  readings: { secondsAgo: number; metrics: Record<string, unknown> }[],
): Promise<void> {
  if (readings.length === 0) return;
  const values: unknown[] = [];
  const rows = readings.map((r, i) => {
    values.push(tenant, deviceId, r.secondsAgo, JSON.stringify(r.metrics));
    const b = i * 4;
    return `($${b + 1}, $${b + 2}, now() - make_interval(secs => $${b + 3}), $${b + 4}::jsonb)`;
  });
  await db.query(`INSERT INTO telemetry (tenant_id, device_id, ts, metrics) VALUES ${rows.join(", ")}`, values);
}

export async function siteOf(db: pg.Client, tenant: string, deviceId: string): Promise<string> {
  const { rows } = await db.query<{ site_id: string }>(`SELECT site_id FROM devices WHERE tenant_id = $1 AND device_id = $2`, [tenant, deviceId]);
  if (!rows[0]) throw new Error(`no device ${deviceId}`);
  return rows[0].site_id;
}

/** The `seq`s of the newest events of the tenant's `activity` topic, newest first, as stored. */
export async function activitySeqs(db: pg.Client, tenant: string, limit = 50): Promise<number[]> {
  const { rows } = await db.query<{ seq: string }>(
    `SELECT seq FROM events WHERE tenant_id = $1 AND topic = 'activity' ORDER BY seq DESC LIMIT $2`,
    [tenant, limit],
  );
  return rows.map((r) => Number(r.seq));
}

/** How many of the tenant's events the poller has not relayed to NATS yet. */
export async function unrelayedEvents(db: pg.Client, tenant: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM events WHERE tenant_id = $1 AND relayed_at IS NULL`, [tenant]);
  return Number(rows[0]?.n ?? 0);
}
