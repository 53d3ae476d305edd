/**
 * The dashboard's {@link PulseClient}: tickets from the web service (a 401 there ends the
 * session), and the REST fallback that stands in for the pushes while the socket is down.
 *
 * @packageDocumentation
 */

import {
  PulseClient,
  TicketError,
  ticketFetcher,
  type Alert,
  type DataMessage,
  type EventsPosition,
  type PollContext,
  type TelemetryMessage,
  type Ticket,
} from "../client/index.js";
import { getJson, reportSessionLost } from "./api.js";

/** Open alerts read per fallback poll: enough to count them exactly in all but extreme cases. */
const POLL_ALERTS_LIMIT = 1000;
/** Alerts listed in a polled snapshot, as the poller's default cap. */
const POLL_ALERTS_SHOWN = 100;
/** Events read per topic and poll (the endpoint's maximum); the next poll goes on from there. */
const POLL_EVENTS_LIMIT = 1000;

/** A ticket fetcher that reports a lost session (401) before failing. */
export function sessionTicketFetcher(
  fetchTicket: (signal?: AbortSignal) => Promise<Ticket> = ticketFetcher(),
): (signal?: AbortSignal) => Promise<Ticket> {
  return async (signal?: AbortSignal) => {
    try {
      return await fetchTicket(signal);
    } catch (error) {
      if (error instanceof TicketError && error.status === 401) reportSessionLost();
      throw error;
    }
  };
}

/**
 * The events of one held topic after the client's position, in ascending `seq`, as pushes.
 * Without a position, only the newest event: it gives the client a position to go on from,
 * without replaying history the subscribers loaded themselves.
 */
async function pollEvents({ topic, after }: EventsPosition, publish: PollContext["publish"], signal: AbortSignal): Promise<void> {
  const query = after === null ? "limit=1" : `after=${after}&limit=${POLL_EVENTS_LIMIT}`;
  const body = (await getJson(`/api/v2/events?topic=${encodeURIComponent(topic)}&${query}`, signal)) as { events?: unknown };
  // The client checks each event's shape and `seq` before it delivers it.
  if (Array.isArray(body.events)) for (const event of body.events) publish(event as DataMessage);
}

/**
 * The REST fallback: the fleet, the open alerts, the newest reading of every watched device and
 * the events of every held event topic since the client's position, published as the pushes they
 * stand for. Runs only while the socket is down.
 */
export function restFallback(client: () => PulseClient) {
  return async ({ publish, signal, events }: PollContext): Promise<void> => {
    // Alongside the snapshots, but a failing event poll must not hold them back: its error is
    // raised once they are published.
    const eventPolls = Promise.all(events.map((position) => pollEvents(position, publish, signal)));
    eventPolls.catch(() => undefined);
    const [fleet, page] = await Promise.all([
      getJson("/api/v2/fleet", signal),
      getJson(`/api/v2/alerts?status=OPEN&limit=${POLL_ALERTS_LIMIT}`, signal),
    ]);
    const items = Array.isArray((page as { items?: unknown }).items) ? ((page as { items: unknown[] }).items) : [];
    const tenant = (fleet as { tenant_id?: unknown }).tenant_id;
    // Bodies are passed on unchecked: the dashboard checks every message where it uses it
    // (src/model/validate.ts), pushed or polled alike.
    publish(fleet as DataMessage);
    publish({
      type: "alerts",
      tenant_id: typeof tenant === "string" ? tenant : "",
      seq: 0,
      ts: new Date().toISOString(),
      alerts: items.slice(0, POLL_ALERTS_SHOWN) as Alert[],
      total_open: items.length,
    });
    const devices = client().channels.flatMap((c) => (c.type === "device" ? [c.device_id] : []));
    await Promise.all(
      devices.map(async (deviceId) => {
        const detail = (await getJson(`/api/v2/devices/${encodeURIComponent(deviceId)}`, signal)) as { latest?: unknown };
        if (detail.latest) {
          publish({ type: "telemetry", tenant_id: typeof tenant === "string" ? tenant : "", device_id: deviceId, seq: 0, data: detail.latest as TelemetryMessage["data"] });
        }
      }),
    );
    await eventPolls;
  };
}

/** A client for the logged-in user; call `start()` to connect. */
export function newDashboardClient(): PulseClient {
  const client: PulseClient = new PulseClient({
    getTicket: sessionTicketFetcher(),
    poll: restFallback(() => client),
  });
  return client;
}
