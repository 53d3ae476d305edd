import type { DeviceStatus } from "../client/index.js";
import { severity } from "../model/format.js";

const STATUS_LABEL: Record<DeviceStatus, string> = { ONLINE: "Online", STALE: "Stale", OFFLINE: "Offline" };

/** A device status as a coloured badge. */
export function StatusBadge({ status }: { status: DeviceStatus }) {
  return <span className={`badge badge--${status.toLowerCase()}`}>{STATUS_LABEL[status]}</span>;
}

/** An alert severity as a coloured badge with its number in the tooltip. */
export function SeverityBadge({ level }: { level: number }) {
  const s = severity(level);
  return (
    <span className={`badge badge--sev-${s.tone}`} title={`severity ${level}`}>
      {s.label}
    </span>
  );
}
