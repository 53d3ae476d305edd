/**
 * The dashboard's {@link PulseClient}: tickets from the web service (a 401 there ends the
 * session), and the REST fallback that stands in for the pushes while the socket is down, or
 * while the gateway refuses a channel for now.
 *
 * @packageDocumentation
 */

import {
  Backoff,
  PulseClient,
  TicketError,
  ticketFetcher,
  type Alert,
  type AlertsMessage,
  type DataMessage,
  type EventsPosition,
  type PollContext,
  type TelemetryMessage,
  type Ticket,
} from "../client/index.js";
import type { Me } from "../model/validate.js";
import { fetchMe, getJson, reportSessionLost } from "./api.js";
import { reportSessionChange, sameUser, ticketHolder } from "./sessionChanges.js";

/** Open alerts read per fallback poll: enough to count them exactly in all but extreme cases. */
const POLL_ALERTS_LIMIT = 1000;
/** Alerts listed in a polled snapshot, as the poller's default cap. */
const POLL_ALERTS_SHOWN = 100;
/** Events read per topic and poll (the endpoint's maximum); the next poll goes on from there. */
const POLL_EVENTS_LIMIT = 1000;

/**
 * A ticket fetcher that reports a lost session (401) before failing, and a ticket for another
 * user than `me` (the cookie now holds another login) as a changed session, without using it.
 */
export function sessionTicketFetcher(
  me: Pick<Me, "tenant_id" | "email"> | null,
  fetchTicket: (signal?: AbortSignal) => Promise<Ticket> = ticketFetcher(),
): (signal?: AbortSignal) => Promise<Ticket> {
  return async (signal?: AbortSignal) => {
    let ticket: Ticket;
    try {
      ticket = await fetchTicket(signal);
    } catch (error) {
      if (error instanceof TicketError && error.status === 401) reportSessionLost();
      throw error;
    }
    const holder = ticketHolder(ticket.token);
    if (me && holder && !sameUser(me, holder)) {
      reportSessionChange();
      throw new TicketError(`the session is now ${holder.email} of ${holder.tenant_id}'s`);
    }
    return ticket;
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
 * `created_at` as a number that orders as the timestamp does, to the microsecond the database
 * keeps (`Date.parse` stops at the millisecond, and the strings differ in their number of
 * digits, so neither orders them alone). Unreadable: below every other.
 */
function raisedAt(item: unknown): number {
  const created = typeof item === "object" && item !== null ? (item as { created_at?: unknown }).created_at : undefined;
  if (typeof created !== "string") return Number.NEGATIVE_INFINITY;
  const ms = Date.parse(created);
  if (Number.isNaN(ms)) return Number.NEGATIVE_INFINITY;
  const micros = /\.\d{3}(\d{1,3})/.exec(created)?.[1]?.padEnd(3, "0") ?? "000";
  return ms * 1000 + Number(micros);
}

function alertId(item: unknown): number {
  const id = typeof item === "object" && item !== null ? (item as { alert_id?: unknown }).alert_id : undefined;
  return typeof id === "number" ? id : Number.NEGATIVE_INFINITY;
}

/**
 * Polled alerts in the order of a pushed snapshot: newest first by `created_at`, then by
 * `alert_id`, both descending (the REST list is ordered by `alert_id` alone). Otherwise each
 * switch between pushes and polls would reorder the table and cap a different set of rows.
 */
export function newestAlertsFirst(items: readonly unknown[]): unknown[] {
  const keyed = items.map((item) => ({ item, at: raisedAt(item), id: alertId(item) }));
  keyed.sort((a, b) => (a.at === b.at ? descending(a.id, b.id) : descending(a.at, b.at)));
  return keyed.map((k) => k.item);
}

function descending(a: number, b: number): number {
  return a === b ? 0 : a > b ? -1 : 1;
}

/**
 * The open alerts to report for a polled page. With `next` the page is not all of them: its
 * length is only a lower bound, and the last pushed count (exact when it was pushed) is kept if
 * larger, rather than a count capped at the page size shown as current.
 */
export function polledTotalOpen(items: readonly unknown[], hasMore: boolean, pushedTotal: number | undefined): number {
  return hasMore && pushedTotal !== undefined ? Math.max(items.length, pushedTotal) : items.length;
}

/** What the newest alerts snapshot the gateway pushed counted of every open alert. */
interface PushedCounts {
  total: number;
  bySeverity: AlertsMessage["open_by_severity"];
}

/**
 * The counts of the newest alerts snapshot the gateway pushed, given the snapshots the fallback
 * published itself: the client's newest snapshot is one or the other. Read at each poll, so the
 * newest push before it counts.
 */
function pushedAlertsCounts(client: PulseClient, polled: WeakSet<object>, before: PushedCounts | undefined): PushedCounts | undefined {
  const latest = client.latest("alerts");
  if (!latest || polled.has(latest)) return before;
  return typeof latest.total_open === "number" ? { total: latest.total_open, bySeverity: latest.open_by_severity } : before;
}

/**
 * The open alerts per severity to report for a polled page: counted from the page when it holds
 * every open alert, else the last pushed counts (absent when none were pushed, and the dashboard
 * counts the listed alerts).
 */
export function polledOpenBySeverity(
  items: readonly unknown[],
  hasMore: boolean,
  pushed: AlertsMessage["open_by_severity"],
): AlertsMessage["open_by_severity"] {
  if (hasMore) return pushed;
  const counts: Record<string, number> = {};
  for (const item of items) {
    const severity = (item as { severity?: unknown }).severity;
    if (typeof severity === "number") counts[String(severity)] = (counts[String(severity)] ?? 0) + 1;
  }
  return counts;
}

/**
 * The REST fallback: the fleet, the open alerts, the newest reading of every watched device and
 * the events of every held event topic since the client's position, published as the pushes they
 * stand for. Runs while the socket is down, or while the gateway refuses a channel for now; the
 * client delivers only what the socket does not serve.
 */
export function restFallback(client: () => PulseClient) {
  const polled = new WeakSet<object>();
  let pushed: PushedCounts | undefined;
  return async ({ publish, signal, events }: PollContext): Promise<void> => {
    pushed = pushedAlertsCounts(client(), polled, pushed);
    // Alongside the snapshots, but a failing event poll must not hold them back: its error is
    // raised once they are published.
    const eventPolls = Promise.all(events.map((position) => pollEvents(position, publish, signal)));
    eventPolls.catch(() => undefined);
    const [fleet, page] = await Promise.all([
      getJson("/api/v2/fleet", signal),
      getJson(`/api/v2/alerts?status=OPEN&limit=${POLL_ALERTS_LIMIT}`, signal),
    ]);
    const { items: listed, next } = page as { items?: unknown; next?: unknown };
    const items = newestAlertsFirst(Array.isArray(listed) ? listed : []);
    const hasMore = next !== null && next !== undefined;
    const tenant = (fleet as { tenant_id?: unknown }).tenant_id;
    // Bodies are passed on unchecked: the dashboard checks every message where it uses it
    // (src/model/validate.ts), pushed or polled alike.
    publish(fleet as DataMessage);
    const alerts: AlertsMessage = {
      type: "alerts",
      tenant_id: typeof tenant === "string" ? tenant : "",
      seq: 0,
      ts: new Date().toISOString(),
      alerts: items.slice(0, POLL_ALERTS_SHOWN) as Alert[],
      total_open: polledTotalOpen(items, hasMore, pushed?.total),
      open_by_severity: polledOpenBySeverity(items, hasMore, pushed?.bySeverity),
    };
    polled.add(alerts);
    publish(alerts);
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

/**
 * After a 4003 (the user was deleted, or may no longer connect), asks the web service whose
 * session this is, until it answers, once per refusal: none (401) ends the session, so the
 * login page shows rather than the last data under "Offline"; another user's is a changed
 * session. The same user stays offline, as the client does after a 4003, and the page says so
 * with a retry (see `LiveRefusedNotice`). A question that gets no answer (pulse-web restarting,
 * a 503, a VPN not up yet) is asked again, 1 s to 31 s apart: until one comes nobody can tell
 * whether the login page or the retry is the way on, and a wall screen nobody clicks would stay
 * frozen on its last data. The questions stop when the refusal is over (the client was started
 * again) and when the returned function is called: a client closed after a 4003 says nothing
 * more, so whoever closes it must stop this too.
 */
export function checkSessionWhenForbidden(
  client: PulseClient,
  me: Pick<Me, "tenant_id" | "email">,
  whoIsIt: () => Promise<Pick<Me, "tenant_id" | "email"> | null> = fetchMe,
): () => void {
  const backoff = new Backoff({ baseMs: 1_000, capMs: 30_000 });
  let again: ReturnType<typeof setTimeout> | undefined;
  let refused = false;
  // Numbers the refusals: an answer to the question of one that is over is ignored.
  let refusal = 0;
  const ask = (question: number) => {
    whoIsIt().then(
      (now) => {
        if (question !== refusal) return;
        if (now === null) reportSessionLost();
        else if (!sameUser(me, now)) reportSessionChange();
      },
      () => {
        if (question === refusal) again = setTimeout(() => ask(question), 1_000 + backoff.next());
      },
    );
  };
  const stopWatching = client.on("connection", (status) => {
    const forbidden = status.state === "offline" && status.reason === "forbidden";
    if (forbidden === refused) return;
    refused = forbidden;
    refusal += 1;
    clearTimeout(again);
    if (!forbidden) return;
    backoff.reset();
    ask(refusal);
  });
  return () => {
    stopWatching();
    refusal += 1;
    clearTimeout(again);
  };
}

/** A client for the logged-in user `me`; call `start()` to connect. */
export function newDashboardClient(me: Me): PulseClient {
  const client: PulseClient = new PulseClient({
    getTicket: sessionTicketFetcher(me),
    poll: restFallback(() => client),
  });
  return client;
}
