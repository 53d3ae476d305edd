import { useQuery } from "@tanstack/react-query";
import { useEffect, useMemo } from "react";

import { deviceStatusQuery, UNLISTED_STATUS_EVERY_MS, type AskedDevice } from "../app/queries.js";
import { useLive } from "../app/session.js";
import type { Channel } from "../client/index.js";
import { nothingLoaded, useDeviceReadings, type DeviceReadingsView } from "../app/useDeviceReadings.js";
import { StatusBadge } from "../components/Badges.js";
import { ErrorCard } from "../components/ErrorCard.js";
import { Link } from "../components/Link.js";
import { RelativeTime } from "../components/RelativeTime.js";
import { StaleNotice } from "../components/StaleNotice.js";
import { TelemetryCharts } from "../components/TelemetryCharts.js";
import { Widget } from "../components/Widget.js";
import { clockTime, dateTime, metricLabel, metricValue } from "../model/format.js";
import { findDevice } from "../model/fleetFeed.js";
import type { DeviceDetail, Reading } from "../model/validate.js";

const RECENT_ROWS = 15;
/**
 * Most metrics shown as tiles and as columns: a device sends what it likes, and a reading with
 * thousands of keys would otherwise make thousands of cells, every reading, and freeze the tab.
 */
export const MAX_METRICS_SHOWN = 24;
/** A longer text value is shown cut, whole in its tooltip. */
const MAX_VALUE_CHARS = 80;

function shortValue(value: unknown): { text: string; whole?: string } {
  const text = metricValue(value);
  return text.length > MAX_VALUE_CHARS ? { text: `${text.slice(0, MAX_VALUE_CHARS - 1)}…`, whole: text.slice(0, 2_000) } : { text };
}

/** The way back to the list, and the device's id as the page's heading (focused on navigation). */
function PageTitle({ deviceId }: { deviceId: string }) {
  return (
    <>
      <Link to="/" className="back">
        ← All devices
      </Link>
      <h1 className="page__title cell-mono" tabIndex={-1}>
        {deviceId}
      </h1>
    </>
  );
}

/** One device: its status, newest reading, live charts and recent readings. */
export function DevicePage({ deviceId }: { deviceId: string }) {
  const data = useDeviceReadings(deviceId);
  const listed = useLive((s) => findDevice(s.fleet, deviceId));
  const latest = data.readings[data.readings.length - 1];
  // A device the capped fleet push leaves out has no pushed status: while its readings arrive,
  // the status is read again now and then, or it would stay as the page found it.
  const round = data.liveCount > 0 && latest ? Math.floor(latest.at / UNLISTED_STATUS_EVERY_MS) : null;
  const reread = useQuery(deviceStatusQuery(deviceId));
  const { refetch } = reread;
  const rereadWanted = !listed && round !== null && !data.notFound;
  useEffect(() => {
    if (rereadWanted) void refetch();
  }, [rereadWanted, round, refetch]);
  const fresher = fresherStatus(reread.data, data.askedAt);
  const device = listed ?? fresher ?? data.detail;
  // The fleet republishes a last-seen change only now and then; a newer live reading is newer.
  const lastSeen = newest(device?.last_seen_at ?? null, latest?.timestamp ?? null);
  // The channel the live widgets follow, and say so when it is not updating.
  const channel = useMemo<Channel>(() => ({ type: "device", device_id: deviceId }), [deviceId]);

  if (data.notFound) {
    return (
      <div className="page" data-testid="device-not-found">
        <div className="page__head">
          <PageTitle deviceId={deviceId} />
        </div>
        <ErrorCard title="Device not found" message={`There is no device ${deviceId} in this tenant.`} />
      </div>
    );
  }

  return (
    <div className="page page--device" data-testid="device-page">
      <div className="page__head">
        <PageTitle deviceId={deviceId} />
        {device && <StatusBadge status={device.status} />}
        {device && (
          <dl className="facts">
            <dt>Site</dt>
            <dd className="cell-mono">{device.site_id}</dd>
            <dt>Last seen</dt>
            <dd>
              <RelativeTime timestamp={lastSeen} />
            </dd>
            <dt>Battery</dt>
            <dd>{device.battery_pct === null ? "—" : `${Math.round(device.battery_pct)} %`}</dd>
          </dl>
        )}
      </div>

      <Widget title="Latest reading" testId="latest-widget" channel={channel}>
        {data.liveError && <ErrorCard title="A malformed telemetry update was ignored" message={data.liveError} />}
        {latest ? <LatestReading reading={latest} /> : <p className="placeholder">{data.historyLoaded ? "This device has not reported yet." : "Loading…"}</p>}
      </Widget>

      <Widget
        title="Telemetry"
        testId="telemetry-widget"
        channel={channel}
        actions={
          <span className="widget__meta" data-testid="reading-count" data-count={data.readings.length} data-live={data.liveCount}>
            {data.readings.length} readings · {data.liveCount} live
          </span>
        }
      >
        <TelemetryBody data={data} />
      </Widget>

      <Widget title="Recent readings" testId="readings-widget">
        <RecentReadings readings={data.readings} />
      </Widget>
    </div>
  );
}

/**
 * The charts, or why there are none. A failed load takes their place only while nothing is on
 * show: a reload that fails (after a reconnect, say) keeps the readings, live ones still merging
 * in, and says they may be out of date until a later load succeeds.
 */
export function TelemetryBody({ data }: { data: DeviceReadingsView }) {
  const retry = data.reloading ? undefined : data.retry;
  if (data.historyError && nothingLoaded(data)) return <ErrorCard title="Could not load the history" message={data.historyError} onRetry={retry} />;
  if (!data.historyLoaded && data.readings.length === 0) return <p className="placeholder">Loading history…</p>;
  return (
    <>
      {data.historyError && <StaleNotice message={`Could not reload the history: ${data.historyError}. The readings shown may be incomplete.`} onRetry={retry} />}
      <TelemetryCharts readings={data.readings} />
    </>
  );
}

/**
 * The status read again, where it was asked for after the history that is shown: a history
 * reloaded after a reconnect is newer than a status read while readings came before it, but
 * one asked for before a reading arrived, and answered after the status read that reading
 * called for, is older, though it came last.
 */
export function fresherStatus(status: AskedDevice | undefined, historyAskedAt: number): DeviceDetail | undefined {
  return status && status.askedAt > historyAskedAt ? status.detail : undefined;
}

function newest(a: string | null, b: string | null): string | null {
  if (a === null || b === null) return a ?? b;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

export function LatestReading({ reading }: { reading: Reading }) {
  const all = Object.entries(reading.metrics);
  const entries = all.slice(0, MAX_METRICS_SHOWN);
  return (
    <div className="latest" data-testid="latest-reading">
      <div className="latest__time" title={dateTime(reading.timestamp)}>
        <RelativeTime timestamp={reading.timestamp} />
      </div>
      <div className="latest__metrics">
        {entries.map(([key, value]) => {
          const shown = shortValue(value);
          return (
            <div className="metric" key={key} data-metric={key}>
              <div className="metric__label">{metricLabel(key)}</div>
              <div className="metric__value" title={shown.whole}>
                {shown.text}
              </div>
            </div>
          );
        })}
      </div>
      {all.length > entries.length && <p className="placeholder">and {all.length - entries.length} more metrics not shown</p>}
    </div>
  );
}

export function RecentReadings({ readings }: { readings: readonly Reading[] }) {
  const recent = useMemo(() => readings.slice(-RECENT_ROWS).reverse(), [readings]);
  const keys = useMemo(() => [...new Set(recent.flatMap((r) => Object.keys(r.metrics)))].sort().slice(0, MAX_METRICS_SHOWN), [recent]);
  if (recent.length === 0) return <p className="placeholder">No readings.</p>;
  return (
    <div className="table-scroll table-scroll--short" tabIndex={0} role="region" aria-label="Recent readings, scrollable">
      <table className="table table--numbers" data-testid="readings-table">
        <thead>
          <tr>
            <th>Time</th>
            {keys.map((k) => (
              <th key={k}>{metricLabel(k)}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {recent.map((r) => (
            <tr key={r.at}>
              <td className="cell-mono" title={dateTime(r.timestamp)}>
                {clockTime(r.at)}
              </td>
              {keys.map((k) => {
                const shown = shortValue(r.metrics[k]);
                return (
                  <td key={k} className="cell-num" title={shown.whole}>
                    {shown.text}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
