/**
 * The live session: one {@link PulseClient} and one {@link LiveStore} for the logged-in user,
 * started when the session view mounts and closed when it unmounts (logout, lost session).
 *
 * @packageDocumentation
 */

import { createContext, useContext, useEffect, useState, useSyncExternalStore, type ReactNode } from "react";
import { QueryClientProvider } from "@tanstack/react-query";
import { useStore } from "zustand";

import { channelTopic, type Channel, type PulseClient, type SubscriptionStatus } from "../client/index.js";
import type { Me } from "../model/validate.js";
import type { LogoutOptions } from "./api.js";
import { LiveStore, type LiveState } from "./liveStore.js";
import { notifyCriticalAlerts } from "./notifications.js";
import { checkSessionWhenForbidden, newDashboardClient } from "./pulseClient.js";
import { newQueryClient } from "./queries.js";

export interface Session {
  me: Me;
  client: PulseClient;
  store: LiveStore;
  /**
   * Ends the session (with `everywhere`, every session of the user); rejects, the session kept,
   * when the server did not end it.
   */
  logout: (options?: LogoutOptions) => Promise<void>;
}

const SessionContext = createContext<Session | null>(null);

export function LiveSession({ me, onLogout, children }: { me: Me; onLogout: (options?: LogoutOptions) => Promise<void>; children: ReactNode }) {
  const [live] = useState(() => {
    const client = newDashboardClient(me);
    return { client, store: new LiveStore(client, { onCriticalAlerts: notifyCriticalAlerts }) };
  });
  // One query cache per session: nothing one user read is shown to the next.
  const [queries] = useState(newQueryClient);
  // Who the session is for never changes here (App keys it by them): a new role does not restart it.
  const { tenant_id, email } = me;
  useEffect(() => {
    const stopStore = live.store.start();
    // Stopped with the session: a closed client tells nothing more, and would leave it asking.
    const stopChecking = checkSessionWhenForbidden(live.client, { tenant_id, email });
    live.client.start();
    return () => {
      stopChecking();
      stopStore();
      live.client.close();
    };
  }, [live, tenant_id, email]);
  useEffect(() => () => queries.clear(), [queries]);
  return (
    <QueryClientProvider client={queries}>
      <SessionContext.Provider value={{ me, ...live, logout: onLogout }}>{children}</SessionContext.Provider>
    </QueryClientProvider>
  );
}

/** The session; only inside {@link LiveSession}. */
export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside of LiveSession");
  return session;
}

/**
 * Where `channel` stands on the gateway (see the client's subscription states); re-renders on
 * each change. `undefined` while the channel is not held.
 */
export function useSubscriptionStatus(channel: Channel | undefined): SubscriptionStatus | undefined {
  const { client } = useSession();
  const key = channel ? channelTopic(channel) : "";
  return useSyncExternalStore(
    (notify) =>
      client.on("subscription", (s) => {
        if (channelTopic(s.channel) === key) notify();
      }),
    () => (channel ? client.subscriptionStatus(channel) : undefined),
  );
}

/** A part of the live state; re-renders when that part changes. */
export function useLive<T>(select: (state: LiveState) => T): T {
  const { store } = useSession();
  return useStore(store.state, select);
}
