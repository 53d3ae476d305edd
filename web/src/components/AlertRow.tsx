import { memo } from "react";

import type { Alert } from "../client/index.js";
import { dateTime } from "../model/format.js";
import { SeverityBadge } from "./Badges.js";
import { Link } from "./Link.js";
import { RelativeTime } from "./RelativeTime.js";

interface Props {
  alert: Alert;
  isNew: boolean;
  open: boolean;
  onToggle: (alertId: number) => void;
  /** `aria-rowindex` of its row when only some rows are rendered (its details row: the next). */
  rowIndex?: number;
}

/** One open alert, with a details row when opened. Every field is rendered as text. */
export const AlertRow = memo(function AlertRow({ alert, isNew, open, onToggle, rowIndex }: Props) {
  const detailsId = `alert-details-${alert.alert_id}`;
  return (
    <>
      <tr className={`alert-row${isNew ? " is-new" : ""}${open ? " is-open" : ""}`} data-alert-id={alert.alert_id} aria-rowindex={rowIndex}>
        <td className="cell-toggle">
          <button
            type="button"
            className="row-toggle"
            aria-expanded={open}
            aria-controls={open ? detailsId : undefined}
            aria-label={open ? "Hide details" : "Show details"}
            onClick={() => onToggle(alert.alert_id)}
          >
            {open ? "▾" : "▸"}
          </button>
        </td>
        <td>
          <SeverityBadge level={alert.severity} />
        </td>
        <td className="cell-time">
          <RelativeTime timestamp={alert.created_at} />
        </td>
        <td className="cell-mono">
          <Link to={`/devices/${encodeURIComponent(alert.device_id)}`}>{alert.device_id}</Link>
        </td>
        <td className="cell-mono muted">{alert.site_id}</td>
        <td className="cell-mono">{alert.alert_type}</td>
        <td className="cell-summary" title={alert.summary} data-testid="alert-summary">
          {alert.summary}
        </td>
      </tr>
      {open && (
        <tr className="alert-details" id={detailsId} aria-rowindex={rowIndex === undefined ? undefined : rowIndex + 1}>
          <td />
          <td colSpan={6}>
            <dl className="details">
              <dt>Alert</dt>
              <dd className="cell-mono">#{alert.alert_id}</dd>
              <dt>Status</dt>
              <dd>{alert.status}</dd>
              <dt>Raised</dt>
              <dd>{dateTime(alert.created_at)}</dd>
              <dt>Severity</dt>
              <dd>{alert.severity}</dd>
              <dt>Summary</dt>
              <dd className="details__text">{alert.summary}</dd>
            </dl>
          </td>
        </tr>
      )}
    </>
  );
});
