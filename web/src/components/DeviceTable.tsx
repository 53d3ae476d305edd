import { useCallback, useDeferredValue, useMemo, useRef, useState } from "react";

import { useLive } from "../app/session.js";
import type { Channel, DeviceStatus } from "../client/index.js";
import { filterDevices, type DeviceFilter, type FleetFeed } from "../model/fleetFeed.js";
import { DeviceRow } from "./DeviceRow.js";
import { ErrorCard } from "./ErrorCard.js";
import { SpacerRow, useVirtualRows } from "./virtualRows.js";
import { Widget } from "./Widget.js";

const STATUS_FILTERS: { status: DeviceStatus | null; label: string }[] = [
  { status: null, label: "All" },
  { status: "OFFLINE", label: "Offline" },
  { status: "STALE", label: "Stale" },
  { status: "ONLINE", label: "Online" },
];

/** The live channel this widget shows. */
const FLEET: Channel = { type: "fleet" };

/** Columns of the table, for rows that span it. */
const COLUMNS = 5;
/** A device row's height in px before it is measured. */
const ROW_PX = 37;

/**
 * The fleet's devices with live status and last-seen, least healthy first; filterable. The
 * filter runs deferred (typing stays responsive however big the fleet), and a long list renders
 * only the rows near the view.
 */
export function DeviceTable() {
  const feed = useLive((s) => s.fleet);
  const [filter, setFilter] = useState<DeviceFilter>({ text: "", status: null });
  const counts = feed.message?.counts;
  const countOf = (status: DeviceStatus | null) =>
    !counts ? 0 : status === null ? counts.total : status === "ONLINE" ? counts.online : status === "STALE" ? counts.stale : counts.offline;

  const toolbar = (
    <div className="toolbar">
      <input
        type="search"
        className="input input--small"
        placeholder="Filter device or site"
        aria-label="Filter devices by device or site id"
        value={filter.text}
        onChange={(event) => setFilter({ ...filter, text: event.currentTarget.value })}
        data-testid="device-filter"
      />
      <div className="segmented" role="group" aria-label="Status">
        {STATUS_FILTERS.map((f) => (
          <button
            key={f.label}
            type="button"
            className={`segmented__item${filter.status === f.status ? " is-active" : ""}`}
            aria-pressed={filter.status === f.status}
            onClick={() => setFilter({ ...filter, status: f.status })}
          >
            {f.label} <span className="segmented__count">{countOf(f.status)}</span>
          </button>
        ))}
      </div>
    </div>
  );

  return (
    <Widget title="Devices" testId="devices-widget" actions={toolbar} className="widget--devices" channel={FLEET}>
      <DeviceList feed={feed} filter={filter} />
    </Widget>
  );
}

/**
 * The devices of `feed` that pass `filter`. A malformed update is shown as a banner above the
 * last valid snapshot, which stays in place: the table keeps its scroll position.
 */
export function DeviceList({ feed, filter }: { feed: FleetFeed; filter: DeviceFilter }) {
  const deferredFilter = useDeferredValue(filter);
  const devices = feed.message?.devices;
  const shown = useMemo(() => (devices ? filterDevices(devices, deferredFilter) : []), [devices, deferredFilter]);
  const scroller = useRef<HTMLDivElement>(null);
  const keyOf = useCallback((index: number) => shown[index]?.device_id ?? index, [shown]);
  const rows = useVirtualRows(shown.length, scroller, ROW_PX, keyOf);
  const counts = feed.message?.counts;
  return (
    <>
      {feed.error && (
        <ErrorCard
          title="The fleet feed sent a malformed update"
          message={`${feed.error}. ${feed.message ? "Showing the last valid update until" : "Waiting for"} the next valid update.`}
        />
      )}
      {!feed.message ? (
        feed.error ? null : <p className="placeholder">Waiting for the first fleet update…</p>
      ) : (
        <>
          <div className="table-scroll" data-testid="devices-scroll" tabIndex={0} role="region" aria-label="Devices, scrollable" ref={scroller}>
            <table className="table" data-testid="devices-table" aria-rowcount={rows.virtual ? shown.length + 1 : undefined} aria-busy={filter !== deferredFilter}>
              <thead>
                <tr aria-rowindex={rows.virtual ? 1 : undefined}>
                  <th>Device</th>
                  <th>Site</th>
                  <th>Status</th>
                  <th>Last seen</th>
                  <th>Battery</th>
                </tr>
              </thead>
              <tbody>
                <SpacerRow height={rows.before} columns={COLUMNS} />
                {rows.indexes.map((index) => (
                  <DeviceRow key={shown[index]!.device_id} device={shown[index]!} index={index} rowIndex={rows.virtual ? index + 2 : undefined} measure={rows.measure} />
                ))}
                <SpacerRow height={rows.after} columns={COLUMNS} />
              </tbody>
            </table>
            {shown.length === 0 && <p className="placeholder">No device matches the filter.</p>}
          </div>
          {counts && counts.total > feed.message.devices.length && (
            <p className="widget__foot">
              Listing the {feed.message.devices.length} least healthy of {counts.total} devices.
            </p>
          )}
        </>
      )}
    </>
  );
}
