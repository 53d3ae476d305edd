import { memo } from "react";

import type { FleetDevice } from "../client/index.js";
import { StatusBadge } from "./Badges.js";
import { Link } from "./Link.js";
import { RelativeTime } from "./RelativeTime.js";

interface Props {
  device: FleetDevice;
  /** Position in the listed devices (for measuring it in a long table). */
  index: number;
  /** `aria-rowindex` when only some rows are rendered. */
  rowIndex?: number;
  measure: (element: Element | null) => void;
}

/**
 * One device of the fleet table. Memoised: the fleet feed keeps the object of a device that did
 * not change, so a push re-renders only the rows that did.
 */
export const DeviceRow = memo(function DeviceRow({ device, index, rowIndex, measure }: Props) {
  const battery = device.battery_pct;
  return (
    <tr
      ref={measure}
      data-index={index}
      aria-rowindex={rowIndex}
      data-device-id={device.device_id}
      className={`device-row device-row--${device.status.toLowerCase()}`}
    >
      <td className="cell-mono">
        <Link to={`/devices/${encodeURIComponent(device.device_id)}`}>{device.device_id}</Link>
      </td>
      <td className="cell-mono muted">{device.site_id}</td>
      <td data-testid="device-status">
        <StatusBadge status={device.status} />
      </td>
      <td className="cell-time" data-testid="device-last-seen">
        <RelativeTime timestamp={device.last_seen_at} />
      </td>
      <td className="cell-battery">
        {battery === null ? (
          <span className="muted">—</span>
        ) : (
          <>
            <meter min={0} max={100} low={20} high={50} optimum={100} value={battery} />
            <span className="cell-num">{Math.round(battery)} %</span>
          </>
        )}
      </td>
    </tr>
  );
});
