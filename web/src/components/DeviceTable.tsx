import { useMemo, useState } from "react";

import { useLive } from "../app/session.js";
import type { Channel, DeviceStatus } from "../client/index.js";
import { filterDevices, type DeviceFilter } from "../model/fleetFeed.js";
import { DeviceRow } from "./DeviceRow.js";
import { ErrorCard } from "./ErrorCard.js";
import { Widget } from "./Widget.js";

const STATUS_FILTERS: { status: DeviceStatus | null; label: string }[] = [
  { status: null, label: "All" },
  { status: "OFFLINE", label: "Offline" },
  { status: "STALE", label: "Stale" },
  { status: "ONLINE", label: "Online" },
];

/** The live channel this widget shows. */
const FLEET: Channel = { type: "fleet" };

/** The fleet's devices with live status and last-seen, least healthy first; filterable. */
export function DeviceTable() {
  const feed = useLive((s) => s.fleet);
  const [filter, setFilter] = useState<DeviceFilter>({ text: "", status: null });
  const devices = feed.message?.devices;
  const shown = useMemo(() => (devices ? filterDevices(devices, filter) : []), [devices, filter]);
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
      {feed.error ? (
        <ErrorCard title="The fleet feed sent a malformed update" message={`${feed.error}. Waiting for the next valid update.`} />
      ) : !feed.message ? (
        <p className="placeholder">Waiting for the first fleet update…</p>
      ) : (
        <>
          <div className="table-scroll" data-testid="devices-scroll" tabIndex={0} role="region" aria-label="Devices, scrollable">
            <table className="table" data-testid="devices-table">
              <thead>
                <tr>
                  <th>Device</th>
                  <th>Site</th>
                  <th>Status</th>
                  <th>Last seen</th>
                  <th>Battery</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((device) => (
                  <DeviceRow key={device.device_id} device={device} />
                ))}
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
    </Widget>
  );
}
