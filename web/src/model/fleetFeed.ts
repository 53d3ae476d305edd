/**
 * The fleet feed: the newest valid `fleet` snapshot, or the error of a malformed one, and the
 * filtering of its device list for the device table.
 *
 * @packageDocumentation
 */

import type { DeviceStatus, FleetDevice, FleetMessage } from "../client/index.js";
import { reuseUnchanged } from "./reuse.js";
import { checkFleet } from "./validate.js";

export interface FleetFeed {
  /** The newest valid snapshot; `null` until one arrived. */
  message: FleetMessage | null;
  /** Why the newest message was refused; cleared by the next valid one. */
  error: string | null;
}

export const emptyFleetFeed: FleetFeed = Object.freeze({ message: null, error: null });

/**
 * Applies a received `fleet` message. Pure. Devices that did not change keep their object (and
 * the list keeps its array when none did), so memoised rows skip them.
 */
export function reduceFleet(state: FleetFeed, message: unknown): FleetFeed {
  const checked = checkFleet(message);
  if (!checked.ok) return { ...state, error: checked.error };
  const devices = reuseUnchanged(state.message?.devices, checked.value.devices, (d) => d.device_id);
  return { message: { ...checked.value, devices: devices }, error: null };
}

/** What the device table shows. */
export interface DeviceFilter {
  /** Part of a device or site id, any case; empty for all. */
  text: string;
  /** One status, or `null` for all. */
  status: DeviceStatus | null;
}

/** The devices that match `filter`, in the order of the snapshot (least healthy first). */
export function filterDevices(devices: readonly FleetDevice[], filter: DeviceFilter): FleetDevice[] {
  const needle = filter.text.trim().toLowerCase();
  return devices.filter(
    (d) =>
      (filter.status === null || d.status === filter.status) &&
      (needle === "" || d.device_id.toLowerCase().includes(needle) || d.site_id.toLowerCase().includes(needle)),
  );
}

/** A device of the snapshot, if listed. */
export function findDevice(feed: FleetFeed, deviceId: string): FleetDevice | undefined {
  return feed.message?.devices.find((d) => d.device_id === deviceId);
}
