import { useLive, useSession } from "../app/session.js";
import { clockTime } from "../model/format.js";
import { dataAsOf } from "../model/freshness.js";
import { ErrorCard } from "./ErrorCard.js";

/**
 * Shown while the gateway refuses this session's live updates (it closed with 4003) and the
 * web service has not ended the session (that sends the page to the login form). The client
 * then neither reconnects nor polls: every number on the page is frozen, which a tooltip on the
 * badge alone would leave a wall screen showing for good. The retry starts the client again
 * (a refusal that has passed, an access given back); refused again, the card comes back.
 */
export function LiveRefusedNotice() {
  const { client } = useSession();
  const refused = useLive((s) => s.connection.state === "offline" && s.connection.reason === "forbidden");
  const asOf = useLive((s) => dataAsOf(s.freshness));
  if (!refused) return null;
  return <LiveRefusedCard asOf={asOf} onRetry={() => client.start()} />;
}

/** The card itself: what happened, how old the data is, and the retry. */
export function LiveRefusedCard({ asOf, onRetry }: { asOf: number | null; onRetry: () => void }) {
  const age = asOf === null ? "" : ` What is shown is as of ${clockTime(asOf)}.`;
  return (
    <ErrorCard
      testId="live-refused"
      title="Live updates refused for this session"
      message={`The gateway refused this session's live connection, and nothing on this page is updating.${age} Your access may have changed: try again, or log out and in again.`}
      onRetry={onRetry}
    />
  );
}
