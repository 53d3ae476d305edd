/**
 * A device's readings for the device page: its history from REST (a TanStack query), merged
 * with its live telemetry pushes for as long as the page shows it.
 *
 * @packageDocumentation
 */

import { useQuery } from "@tanstack/react-query";
import { useCallback, useEffect, useReducer, useRef } from "react";

import { mergeReadings, MAX_READINGS } from "../model/readings.js";
import { checkTelemetry, type DeviceDetail, type Reading } from "../model/validate.js";
import type { PulseClient } from "../client/index.js";
import { HttpError } from "./api.js";
import { deviceHistoryQuery } from "./queries.js";
import { watchRefusedPushes } from "./refusedPushes.js";
import { useSession } from "./session.js";

export interface DeviceReadings {
  detail: DeviceDetail | null;
  /** Oldest first. */
  readings: readonly Reading[];
  historyLoaded: boolean;
  /** The device does not exist (404). */
  notFound: boolean;
  /**
   * The newest history load failed; cleared by the next one that succeeds. With readings or a
   * detail already on show it means they may be out of date, not that there is nothing.
   */
  historyError: string | null;
  /** The newest live message was malformed. */
  liveError: string | null;
  /** Live readings received since the page opened. */
  liveCount: number;
}

type Action =
  | { type: "history"; detail: DeviceDetail; readings: Reading[] }
  | { type: "history-failed"; error: string; notFound: boolean }
  | { type: "live"; message: unknown; deviceId: string }
  /** The client refused a telemetry push whose envelope broke the contract. */
  | { type: "live-malformed"; error: string };

const initial: DeviceReadings = {
  detail: null,
  readings: [],
  historyLoaded: false,
  notFound: false,
  historyError: null,
  liveError: null,
  liveCount: 0,
};

export function reduceDeviceReadings(state: DeviceReadings, action: Action): DeviceReadings {
  switch (action.type) {
    case "history":
      return {
        ...state,
        detail: action.detail,
        readings: mergeReadings(state.readings, action.readings, MAX_READINGS),
        historyLoaded: true,
        historyError: null,
        // Found after all (created a moment after the link was opened, or provisioned again).
        notFound: false,
      };
    case "history-failed":
      return { ...state, historyLoaded: true, historyError: action.error, notFound: action.notFound };
    case "live": {
      const checked = checkTelemetry(action.message, action.deviceId);
      if (!checked.ok) return { ...state, liveError: checked.error };
      const readings = mergeReadings(state.readings, [checked.value], MAX_READINGS);
      if (readings === state.readings && state.liveError === null) return state;
      return { ...state, readings, liveError: null, liveCount: state.liveCount + 1 };
    }
    case "live-malformed":
      return { ...state, liveError: action.error };
  }
}

/** Whether nothing of the device is on show yet: no detail from a load, no reading at all. */
export function nothingLoaded(state: DeviceReadings): boolean {
  return state.detail === null && state.readings.length === 0;
}

/**
 * Calls `onAgain` each time the gateway confirms the subscription to `deviceId` after the
 * first time: the client was cut off in between (an outage, a gateway restart), and the
 * readings pushed meanwhile never came, so the history must be read again to close the gap.
 * The first confirmation too when the history was already read by then (`historyRead`): the
 * page opened while no gateway took the subscription (an outage, a refusal being retried), and
 * what was pushed between that read and the confirmation never came either. Returns a function
 * that stops.
 */
export function watchDeviceResubscribed(
  client: PulseClient,
  deviceId: string,
  onAgain: () => void,
  historyRead: () => boolean = () => false,
): () => void {
  let confirmed = 0;
  return client.on("subscription", (status) => {
    const { channel } = status;
    if (status.state !== "subscribed" || channel.type !== "device" || channel.device_id !== deviceId) return;
    confirmed += 1;
    if (confirmed > 1 || historyRead()) onAgain();
  });
}

/**
 * Readings to show for one device, a retry of the history, whether a load runs, and when the
 * last load that answered was asked for (ms; 0 before any), which a read of the device's status
 * asked for later beats.
 */
export type DeviceReadingsView = DeviceReadings & { retry: () => void; reloading: boolean; askedAt: number };

/** Readings to show for one device; call it with a `key` of the device id on the page. */
export function useDeviceReadings(deviceId: string): DeviceReadingsView {
  const { client } = useSession();
  const [state, dispatch] = useReducer(reduceDeviceReadings, initial);

  const history = useQuery(deviceHistoryQuery(deviceId));
  const { data, dataUpdatedAt, refetch } = history;

  // On every successful load, not only on new data: a reload that returns what the cache holds
  // keeps `data` (structural sharing), and must still clear the error of a failed one before it.
  useEffect(() => {
    if (data) dispatch({ type: "history", detail: data.detail, readings: data.readings });
  }, [data, dataUpdatedAt]);

  useEffect(() => {
    const error = history.error;
    if (!error) return;
    const notFound = error instanceof HttpError && error.status === 404;
    dispatch({ type: "history-failed", error: error.message, notFound });
  }, [history.error]);

  // Not for a device the API says this tenant has not: holding it would retry the subscribe
  // (`unknown_device` is for a device added a moment ago) and fail every fallback poll with 404.
  const { notFound } = state;
  useEffect(() => {
    if (notFound) return;
    return client.watch({ type: "device", device_id: deviceId }, (message) => dispatch({ type: "live", message, deviceId }));
  }, [client, deviceId, notFound]);

  useEffect(() => {
    const channel = { type: "device", device_id: deviceId } as const;
    return watchRefusedPushes(client, channel, (error) => dispatch({ type: "live-malformed", error }));
  }, [client, deviceId]);

  const historyRead = useRef(false);
  useEffect(() => {
    historyRead.current = data !== undefined;
  }, [data]);
  useEffect(
    () => watchDeviceResubscribed(client, deviceId, () => void refetch(), () => historyRead.current),
    [client, deviceId, refetch],
  );

  const retry = useCallback(() => void refetch(), [refetch]);
  return { ...state, retry, reloading: history.isFetching, askedAt: data?.askedAt ?? 0 };
}
