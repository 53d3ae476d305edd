import { useCallback, useRef, useState } from "react";

import { useLive } from "../app/session.js";
import type { AlertsMessage, Channel } from "../client/index.js";
import { criticalOpen, type AlertsFeed } from "../model/alertsFeed.js";
import { AlertRow } from "./AlertRow.js";
import { ErrorCard } from "./ErrorCard.js";
import { SpacerRow, useVirtualRows } from "./virtualRows.js";
import { Widget } from "./Widget.js";

/** The live channel this widget shows. */
const ALERTS: Channel = { type: "alerts" };

/** Columns of the table, for rows that span it. */
const COLUMNS = 7;
/** An alert's height in px before it is measured (closed; an open one is measured). */
const ROW_PX = 37;

/**
 * The tenant's open alerts, live; rows that just arrived are highlighted for a moment. Each alert
 * is its own `<tbody>` (its row and, when open, its details), so a long list can measure and
 * render only the alerts near the view.
 */
export function AlertsTable() {
  const feed = useLive((s) => s.alerts);
  const message = feed.message;
  const actions = message && <AlertsCount message={message} />;
  return (
    <Widget title="Open alerts" testId="alerts-widget" actions={actions} className="widget--alerts" channel={ALERTS}>
      <AlertsBody feed={feed} />
    </Widget>
  );
}

/**
 * How many alerts are open and how many are listed; and, when the capped list leaves out
 * critical ones, how many, so that a critical alert behind newer ones is not missed.
 */
export function AlertsCount({ message }: { message: AlertsMessage }) {
  const shown = message.alerts.length;
  const { unlisted } = criticalOpen(message);
  return (
    <span className="widget__meta" data-testid="alerts-count">
      {message.total_open > shown ? `newest ${shown} of ${message.total_open} open` : `${message.total_open} open`}
      {unlisted > 0 && (
        <span className="widget__meta-critical" data-testid="alerts-unlisted-critical">
          {` · ${unlisted} critical not listed`}
        </span>
      )}
    </span>
  );
}

/**
 * The alerts of `feed`. A malformed update is shown as a banner above the last valid snapshot,
 * which stays in place: the table keeps its scroll position and its open rows.
 */
export function AlertsBody({ feed }: { feed: AlertsFeed }) {
  const [openRows, setOpenRows] = useState<ReadonlySet<number>>(() => new Set());
  const toggle = useCallback((id: number) => {
    setOpenRows((rows) => {
      const next = new Set(rows);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  }, []);
  const message = feed.message;
  const alerts = message?.alerts;
  const shown = alerts?.length ?? 0;
  const scroller = useRef<HTMLDivElement>(null);
  const keyOf = useCallback((index: number) => alerts?.[index]?.alert_id ?? index, [alerts]);
  const rows = useVirtualRows(shown, scroller, ROW_PX, keyOf);
  return (
    <>
      {feed.error && (
        <ErrorCard
          title="The alerts feed sent a malformed update"
          message={`${feed.error}. ${message ? "Showing the last valid update until" : "Waiting for"} the next valid update.`}
        />
      )}
      {!message ? (
        feed.error ? null : <p className="placeholder">Waiting for the first alerts update…</p>
      ) : message.alerts.length === 0 ? (
        <p className="placeholder placeholder--good">No open alerts.</p>
      ) : (
        <div className="table-scroll" data-testid="alerts-scroll" tabIndex={0} role="region" aria-label="Open alerts, scrollable" ref={scroller}>
          <table className="table" data-testid="alerts-table">
            <thead>
              <tr>
                <th className="cell-toggle">
                  <span className="visually-hidden">Details</span>
                </th>
                <th>Severity</th>
                <th>Raised</th>
                <th>Device</th>
                <th>Site</th>
                <th>Type</th>
                <th>Summary</th>
              </tr>
            </thead>
            {rows.before > 0 && (
              <tbody>
                <SpacerRow height={rows.before} columns={COLUMNS} />
              </tbody>
            )}
            {rows.indexes.map((index) => {
              const alert = message.alerts[index]!;
              return (
                <tbody key={alert.alert_id} ref={rows.measure} data-index={index}>
                  <AlertRow alert={alert} isNew={feed.fresh.has(alert.alert_id)} open={openRows.has(alert.alert_id)} onToggle={toggle} />
                </tbody>
              );
            })}
            {rows.after > 0 && (
              <tbody>
                <SpacerRow height={rows.after} columns={COLUMNS} />
              </tbody>
            )}
          </table>
        </div>
      )}
    </>
  );
}
