/**
 * A big tenant for the browser: 10,000 devices, 1,000 open alerts, every device and alert listed
 * in its snapshot (the poller's caps raised to match), and a writer that changes a few devices
 * every second so the fleet snapshot is pushed once a second. Shared by the browser test of a big
 * fleet and by the dashboard's performance run (`npm run perf:fleet`).
 */

import { startStack, type Stack } from "./stack.js";

export const BIG_DEVICES = 10_000;
export const BIG_ALERTS = 1_000;
/** Of the devices: every 20th never reported (OFFLINE), every 20th + 1 reported 2 min ago (STALE). */
export const BIG_OFFLINE = BIG_DEVICES / 20;
export const BIG_STALE = BIG_DEVICES / 20;

/**
 * A stack whose one tenant is big, with its readings and alerts in place. With `listAll` (the
 * default) every device and alert is listed in its snapshot; without, the poller's default caps
 * apply (the 1,000 least healthy devices, the 100 newest alerts), as a deployment has them.
 */
export async function startBigFleetStack({ listAll = true } = {}): Promise<Stack> {
  const stack = await startStack({
    name: listAll ? "big-fleet" : "big-fleet-capped",
    devices: BIG_DEVICES,
    sites: 100,
    ...(listAll
      ? {
          // A fleet snapshot listing 10,000 devices is about 1.3 MB: more than nats-server's
          // default max_payload (1 MiB), as deploy/k8s/nats/README.md warns for raised caps.
          natsMaxPayload: 8 * 1024 * 1024,
          pollerEnv: {
            PULSE_FLEET_DEVICES_CAP: String(BIG_DEVICES),
            PULSE_ALERTS_CAP: String(BIG_ALERTS),
            PULSE_FLEET_REFRESH_SECONDS: "1",
          },
        }
      : { pollerEnv: { PULSE_FLEET_REFRESH_SECONDS: "1" } }),
  });
  try {
    await stack.db.query(
      `UPDATE devices d
          SET last_seen_at = CASE WHEN x.n % 20 = 0 THEN NULL
                                  WHEN x.n % 20 = 1 THEN now() - interval '2 minutes'
                                  ELSE now() END
         FROM (SELECT device_id, row_number() OVER (ORDER BY device_id) AS n FROM devices WHERE tenant_id = $1) x
        WHERE d.tenant_id = $1 AND d.device_id = x.device_id`,
      [stack.tenant],
    );
    await stack.db.query(
      `INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary)
       SELECT tenant_id, device_id, site_id, 'load_test', (n % 5)::int, 'Synthetic alert ' || n
         FROM (SELECT tenant_id, device_id, site_id, row_number() OVER (ORDER BY device_id) AS n
                 FROM devices WHERE tenant_id = $1) d
        WHERE n <= $2
        ORDER BY n`,
      [stack.tenant, BIG_ALERTS],
    );
    return stack;
  } catch (error) {
    await stack.stop();
    throw error;
  }
}

/**
 * Changes the battery and last-seen time of `perTick` online devices every `everyMs`, as a live
 * fleet does; each change is a new fleet snapshot. With `offline`, changes the battery of devices
 * that never reported instead: under the default caps only the least healthy devices are listed,
 * so only their changes make a new snapshot. Returns a function that stops and resolves when the
 * last write is done.
 */
export function churnFleet(stack: Stack, { everyMs = 1_000, perTick = 20, offline = false } = {}): () => Promise<void> {
  let stopped = false;
  let tick = 0;
  const running = (async () => {
    while (!stopped) {
      const started = Date.now();
      tick += 1;
      const ids = Array.from({ length: perTick }, (_, i) => {
        const k = tick * perTick + i;
        return deviceId(offline ? 20 * ((k % BIG_OFFLINE) + 1) : online(k));
      });
      await stack.db.query(
        offline
          ? `UPDATE devices SET battery_pct = round((random() * 100)::numeric, 1) WHERE tenant_id = $1 AND device_id = ANY($2)`
          : `UPDATE devices SET battery_pct = round((random() * 100)::numeric, 1), last_seen_at = now()
              WHERE tenant_id = $1 AND device_id = ANY($2)`,
        [stack.tenant, ids],
      );
      const wait = everyMs - (Date.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return async () => {
    stopped = true;
    await running;
  };
}

/** The `k`-th online device (1-based numbering skips the OFFLINE and STALE ones). */
function online(k: number): number {
  const perBlock = 18;
  const block = Math.floor(k / perBlock) % (BIG_DEVICES / 20);
  return block * 20 + 2 + (k % perBlock);
}

/** The simulator's id of device `n` (1-based) of the big fleet: `dev-00001`. */
export function deviceId(n: number): string {
  return `dev-${String(n).padStart(String(BIG_DEVICES).length, "0")}`;
}
