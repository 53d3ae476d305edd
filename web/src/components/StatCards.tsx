import { useLive } from "../app/session.js";
import { criticalOpen } from "../model/alertsFeed.js";
import { fleetShare } from "../model/format.js";

interface CardProps {
  id: string;
  label: string;
  value: number | null;
  sub: string;
  tone: "neutral" | "good" | "warn" | "bad";
  /** The feed behind the card sent a malformed message. */
  error: string | null;
}

function StatCard({ id, label, value, sub, tone, error }: CardProps) {
  return (
    <div className={`stat stat--${error ? "error" : tone}`} data-testid={`stat-${id}`}>
      <div className="stat__label">{label}</div>
      <div className="stat__value" data-testid={`stat-${id}-value`}>
        {error || value === null ? "—" : value.toLocaleString("en-US")}
      </div>
      {/* No alert role: the widget fed by the same channel (the alerts table, the device
          table) announces the error once, not once per card. */}
      <div className="stat__sub" title={error ?? undefined}>
        {error ? "Feed error: waiting for a valid update" : sub}
      </div>
    </div>
  );
}

/** Total / Online / Stale / Open alerts, from the fleet and alerts pushes. */
export function StatCards() {
  const fleet = useLive((s) => s.fleet);
  const alerts = useLive((s) => s.alerts);
  const counts = fleet.message?.counts ?? null;
  const pct = (n: number) => (counts ? fleetShare(n, counts.total) : "");
  const critical = alerts.message ? criticalOpen(alerts.message).count : 0;
  const openAlerts = alerts.message?.total_open ?? null;
  return (
    <div className="stats" data-testid="stat-cards">
      <StatCard id="total" label="Total devices" value={counts?.total ?? null} sub={counts ? `${counts.offline} offline` : "waiting for data"} tone="neutral" error={fleet.error} />
      <StatCard id="online" label="Online" value={counts?.online ?? null} sub={counts ? pct(counts.online) : ""} tone="good" error={fleet.error} />
      <StatCard id="stale" label="Stale" value={counts?.stale ?? null} sub={counts ? pct(counts.stale) : ""} tone={counts && counts.stale > 0 ? "warn" : "neutral"} error={fleet.error} />
      <StatCard
        id="alerts"
        label="Open alerts"
        value={openAlerts}
        sub={alerts.message ? (critical > 0 ? `${critical} critical` : "none critical") : "waiting for data"}
        tone={critical > 0 ? "bad" : openAlerts ? "warn" : "good"}
        error={alerts.error}
      />
    </div>
  );
}
