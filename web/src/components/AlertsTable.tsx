import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useCallback, useMemo, useRef, useState } from "react";

import { openCriticalAlertsQuery } from "../app/queries.js";
import { useLive } from "../app/session.js";
import type { Alert, AlertsMessage, Channel } from "../client/index.js";
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
  const [unlistedShown, setUnlistedShown] = useState(false);
  const toggleUnlisted = useCallback(() => setUnlistedShown((shown) => !shown), []);
  const actions = message && <AlertsCount message={message} unlistedShown={unlistedShown} onToggleUnlisted={toggleUnlisted} />;
  return (
    <Widget title="Open alerts" testId="alerts-widget" actions={actions} className="widget--alerts" channel={ALERTS}>
      {unlistedShown && message && criticalOpen(message).unlisted > 0 && <UnlistedCritical message={message} />}
      <AlertsBody feed={feed} />
    </Widget>
  );
}

/** Where the critical alerts the list leaves out are shown. */
const UNLISTED_ID = "alerts-unlisted";

/**
 * How many alerts are open and how many are listed; and, when the capped list leaves out
 * critical ones, how many, so that a critical alert behind newer ones is not missed, as a
 * button that shows them.
 */
export function AlertsCount({
  message,
  unlistedShown = false,
  onToggleUnlisted,
}: {
  message: AlertsMessage;
  unlistedShown?: boolean;
  onToggleUnlisted?: () => void;
}) {
  const shown = message.alerts.length;
  const { unlisted } = criticalOpen(message);
  return (
    <span className="widget__meta" data-testid="alerts-count">
      {message.total_open > shown ? `newest ${shown} of ${message.total_open} open` : `${message.total_open} open`}
      {unlisted > 0 && (
        <>
          {" · "}
          <button
            type="button"
            className="link-button widget__meta-critical"
            data-testid="alerts-unlisted-critical"
            aria-expanded={unlistedShown}
            aria-controls={unlistedShown ? UNLISTED_ID : undefined}
            title={unlistedShown ? "Hide them" : "Show them"}
            onClick={onToggleUnlisted}
          >
            {`${unlisted} critical not listed`}
          </button>
        </>
      )}
    </span>
  );
}

/**
 * The open critical alerts the capped list leaves out, newest first. The push lists only the
 * newest alerts, so these are read over REST (`min_severity`), and read again whenever the
 * pushed critical counts change; the alerts the list holds are not repeated.
 */
export function UnlistedCritical({ message }: { message: AlertsMessage }) {
  const counts = criticalOpen(message);
  const query = useQuery({ ...openCriticalAlertsQuery(counts), placeholderData: keepPreviousData });
  const [openRows, toggle] = useOpenRows();
  const listed = new Set(message.alerts.map((a) => a.alert_id));
  const alerts = query.data?.filter((a) => !listed.has(a.alert_id));
  return (
    <section id={UNLISTED_ID} className="alerts-unlisted" data-testid="alerts-unlisted" aria-label="Critical alerts not listed">
      {query.isError ? (
        <ErrorCard title="Could not read the critical alerts" message={query.error.message} onRetry={() => void query.refetch()} />
      ) : !alerts ? (
        <p className="placeholder">Reading the critical alerts not listed…</p>
      ) : alerts.length === 0 ? (
        <p className="placeholder">Every open critical alert is listed below.</p>
      ) : (
        <>
          <p className="alerts-unlisted__title">
            {alerts.length < counts.unlisted ? `Newest ${alerts.length} of ${counts.unlisted} critical alerts not listed` : "Critical alerts not listed"}
          </p>
          <table className="table" data-testid="alerts-unlisted-table">
            <AlertsHead />
            {alerts.map((alert) => (
              <tbody key={alert.alert_id}>
                <AlertRow alert={alert} isNew={false} open={openRows.has(alert.alert_id)} onToggle={toggle} />
              </tbody>
            ))}
          </table>
        </>
      )}
    </section>
  );
}

/** Which alerts have their details open, and a toggle for one. */
/**
 * Where each alert's row stands in the whole table, for `aria-rowindex` when only some rows are
 * rendered: after the header and every row before it, details rows of open alerts included;
 * `count` is every row.
 */
function useRowPositions(alerts: readonly Alert[] | undefined, openRows: ReadonlySet<number>): { count: number; of: (index: number) => number } {
  return useMemo(() => {
    const list = alerts ?? [];
    const openIndexes = list.flatMap((a, i) => (openRows.has(a.alert_id) ? [i] : []));
    return {
      count: 1 + list.length + openIndexes.length,
      of: (index: number) => 2 + index + openIndexes.filter((i) => i < index).length,
    };
  }, [alerts, openRows]);
}

function useOpenRows(): [ReadonlySet<number>, (id: number) => void] {
  const [openRows, setOpenRows] = useState<ReadonlySet<number>>(() => new Set());
  const toggle = useCallback((id: number) => {
    setOpenRows((rows) => {
      const next = new Set(rows);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  }, []);
  return [openRows, toggle];
}

/** The header of an alerts table. */
function AlertsHead({ rowIndex }: { rowIndex?: number }) {
  return (
    <thead>
      <tr aria-rowindex={rowIndex}>
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
  );
}

/**
 * The alerts of `feed`. A malformed update is shown as a banner above the last valid snapshot,
 * which stays in place: the table keeps its scroll position and its open rows.
 */
export function AlertsBody({ feed }: { feed: AlertsFeed }) {
  const [openRows, toggle] = useOpenRows();
  const message = feed.message;
  const alerts = message?.alerts;
  const shown = alerts?.length ?? 0;
  const scroller = useRef<HTMLDivElement>(null);
  const keyOf = useCallback((index: number) => alerts?.[index]?.alert_id ?? index, [alerts]);
  const rows = useVirtualRows(shown, scroller, ROW_PX, keyOf);
  const position = useRowPositions(alerts, openRows);
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
          <table className="table" data-testid="alerts-table" aria-rowcount={rows.virtual ? position.count : undefined}>
            <AlertsHead rowIndex={rows.virtual ? 1 : undefined} />
            {rows.before > 0 && (
              <tbody>
                <SpacerRow height={rows.before} columns={COLUMNS} />
              </tbody>
            )}
            {rows.indexes.map((index) => {
              const alert = message.alerts[index]!;
              return (
                <tbody key={alert.alert_id} ref={rows.measure} data-index={index}>
                  <AlertRow
                    alert={alert}
                    isNew={feed.fresh.has(alert.alert_id)}
                    open={openRows.has(alert.alert_id)}
                    onToggle={toggle}
                    rowIndex={rows.virtual ? position.of(index) : undefined}
                  />
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
