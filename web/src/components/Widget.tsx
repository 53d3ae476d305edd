import type { ReactNode } from "react";

import { DEFAULT_FALLBACK_INTERVAL_MS, type Channel } from "../client/index.js";
import { useLive, useSubscriptionStatus } from "../app/session.js";
import { subscriptionStaleText } from "../model/format.js";
import { ErrorBoundary } from "./ErrorBoundary.js";

/** How often the REST fallback refreshes a widget whose channel the gateway refuses for now. */
const REFRESH_SECONDS = DEFAULT_FALLBACK_INTERVAL_MS / 1000;

/**
 * Shown while a widget's live channel is not subscribed although the connection is live: the
 * gateway refused it for now (retrying: REST polling refreshes it meanwhile, and the badge says
 * so; when the polls fail, it says since when, and how old the data is), for good (failed), or
 * has not answered yet.
 */
function Staleness({ channel }: { channel: Channel }) {
  const live = useLive((s) => s.connection.state === "live");
  const freshness = useLive((s) => s.freshness);
  const status = useSubscriptionStatus(channel);
  if (!live || !status || status.state === "subscribed") return null;
  // The gateway's code says why (`unavailable`, `rate_limited`, …): on show, not only on hover.
  const text = subscriptionStaleText(status, freshness, REFRESH_SECONDS);
  return (
    <span className="badge badge--stale" data-testid="widget-stale" role="status" title={status.error?.code}>
      {text}
    </span>
  );
}

/**
 * A dashboard panel with a title; whatever fails inside it stays inside it. With `channel`, it
 * says when that live channel is not updating.
 */
export function Widget(props: {
  title: string;
  testId: string;
  actions?: ReactNode;
  className?: string;
  channel?: Channel;
  children: ReactNode;
}) {
  return (
    <section className={`widget ${props.className ?? ""}`} data-testid={props.testId} aria-label={props.title}>
      <ErrorBoundary label={props.title}>
        <header className="widget__head">
          <h2 className="widget__title">{props.title}</h2>
          {props.channel && <Staleness channel={props.channel} />}
          {props.actions && <div className="widget__actions">{props.actions}</div>}
        </header>
        <div className="widget__body">{props.children}</div>
      </ErrorBoundary>
    </section>
  );
}
