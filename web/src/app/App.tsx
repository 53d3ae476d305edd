import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { Backoff, browserNetwork } from "../client/index.js";
import { Announcer } from "../components/Announcer.js";
import { Header } from "../components/Header.js";
import { LiveRefusedNotice } from "../components/LiveRefusedNotice.js";
import { loginRoute, type Route } from "../model/route.js";
import type { Me } from "../model/validate.js";
import { DashboardPage } from "../pages/DashboardPage.js";
import { DevicePage } from "../pages/DevicePage.js";
import { LoginPage } from "../pages/LoginPage.js";
import { NotFoundPage } from "../pages/NotFoundPage.js";
import { fetchMe, logout, onSessionLost, type LogoutOptions } from "./api.js";
import { forgetNotificationsOptIn } from "./notifications.js";
import { navigate, useRoute } from "./router.js";
import { LiveSession } from "./session.js";
import { announceSessionChange, sameUser, watchSessionChanges } from "./sessionChanges.js";

type SessionState =
  | { status: "loading" }
  | { status: "unreachable"; error: string }
  /**
   * `loggedOut`: by a logout (here or in another tab), not by a session that merely ended: the
   * next to log in may be someone else, and starts at the overview.
   */
  | { status: "anonymous"; notice: string | null; loggedOut: boolean }
  | { status: "ready"; me: Me };

/** The state of a tab whose question of who is logged in failed with `error`. */
function unreachable(error: unknown): SessionState {
  return { status: "unreachable", error: error instanceof Error ? error.message : String(error) };
}

/** What the login page says when the session ended under an open page. */
const SESSION_ENDED = "Your session has ended. Sign in again.";

/** The whole app: who is logged in, and which page to show. */
export function App() {
  const route = useRoute();
  const [session, setSession] = useState<SessionState>({ status: "loading" });
  // Every question of who is logged in, and every login or logout here, is numbered: only the
  // newest question's answer counts, so answers arriving out of order (a logout and a login in
  // another tab, told one after the other) cannot end on an older one.
  const asked = useRef(0);

  // Asks the server who is logged in; the state changes only once it answers. Not a query: the
  // session decides which tree renders (and so which query cache exists), and it ends on a
  // logout or on a 401 from any request, not on staleness.
  const fetchSession = useCallback(() => {
    const question = ++asked.current;
    const answer = (state: SessionState) => {
      if (question === asked.current) setSession(state);
    };
    fetchMe()
      .then((me) => answer(me ? { status: "ready", me } : { status: "anonymous", notice: null, loggedOut: false }))
      .catch((e: unknown) => answer(unreachable(e)));
  }, []);

  useEffect(fetchSession, [fetchSession]);

  const load = useCallback(() => {
    setSession({ status: "loading" });
    fetchSession();
  }, [fetchSession]);

  // Unreachable (opened offline, before a VPN is up, during a deploy of pulse-web): asked again
  // by itself, 1 s to 30 s apart, and at once when the browser is back online, so a dashboard
  // on a wall nobody clicks comes back without a hand. The error card stays until an answer.
  const retries = useRef(new Backoff({ baseMs: 1_000, capMs: 30_000 }));
  useEffect(() => {
    if (session.status !== "unreachable") {
      retries.current.reset();
      return;
    }
    const again = setTimeout(fetchSession, 1_000 + retries.current.next());
    const stop = browserNetwork().watch((online) => {
      if (!online) return;
      clearTimeout(again);
      fetchSession();
    });
    return () => {
      clearTimeout(again);
      stop();
    };
  }, [session, fetchSession]);

  // A 401 from the ticket endpoint or any API read: back to the login page.
  useEffect(() => {
    onSessionLost(() =>
      setSession((s) => (s.status === "ready" ? { status: "anonymous", notice: SESSION_ENDED, loggedOut: false } : s)),
    );
    return () => onSessionLost(() => {});
  }, []);

  // Another tab logged in or out, or a ticket named another user: ask who is logged in now. A
  // new user gets a session of its own (see the key below). A question the server does not
  // answer is asked again (three times, 2 s apart), as it is the newest: an older answer that
  // was dropped for it would otherwise leave this tab on the former user.
  useEffect(() => {
    let retry: ReturnType<typeof setTimeout> | undefined;
    const ask = (tries: number, loggedOut: boolean) => {
      const question = ++asked.current;
      fetchMe()
        .then((me) =>
          setSession((s) => {
            if (question !== asked.current) return s;
            if (!me) {
              if (s.status === "ready") return { status: "anonymous", notice: SESSION_ENDED, loggedOut };
              // The answer this tab waited for (its own question was outdated): the login page.
              return s.status === "unreachable" || s.status === "loading" ? { status: "anonymous", notice: null, loggedOut } : s;
            }
            if (s.status === "ready" && sameUser(s.me, me) && s.me.role === me.role) return s;
            return { status: "ready", me };
          }),
        )
        .catch((e: unknown) => {
          if (question !== asked.current) return;
          if (tries > 1) retry = setTimeout(() => ask(tries - 1, loggedOut), 2_000);
          // Given up on, this question answered for a tab still loading or unreachable, whose
          // own question it outdated: that tab is unreachable, and its retry armed again.
          else
            setSession((s) =>
              s.status === "unreachable" || s.status === "loading"
                ? unreachable(e)
                : s,
            );
        });
    };
    const stop = watchSessionChanges(({ loggedOut }) => {
      clearTimeout(retry);
      ask(3, loggedOut);
    });
    return () => {
      clearTimeout(retry);
      stop();
    };
  }, []);

  const onLoggedIn = useCallback((me: Me) => {
    asked.current += 1; // what this tab did is newer than any answer still on its way
    announceSessionChange();
    setSession({ status: "ready", me });
  }, []);

  // Keep the address bar in line with the session.
  const loggedOut = session.status === "anonymous" && session.loggedOut;
  useEffect(() => {
    if (session.status === "anonymous" && route.page !== "login") {
      navigate(loginRoute(route, `${location.pathname}${location.search}`, loggedOut), { replace: true });
    } else if (session.status === "ready" && route.page === "login") {
      navigate(route.next, { replace: true });
    }
  }, [session.status, loggedOut, route]);

  // A logout that fails leaves the session as it is, and says so where the button is. One that
  // succeeds leaves nothing of this user's behind for the next user of the browser: no
  // desktop notifications they did not opt into, no page of this user's to return to.
  const onLogout = useCallback(async (options: LogoutOptions = {}) => {
    await logout(undefined, options);
    asked.current += 1;
    forgetNotificationsOptIn();
    announceSessionChange({ loggedOut: true });
    const notice = options.everywhere ? "You are logged out everywhere." : "You are logged out.";
    setSession({ status: "anonymous", notice, loggedOut: true });
  }, []);

  switch (session.status) {
    case "loading":
      return <div className="splash" aria-busy="true" />;
    case "unreachable":
      return (
        <main className="login">
          <div className="login__card error-card" role="alert">
            <div className="error-card__title">Pulse is not reachable</div>
            <p className="error-card__message">{session.error}</p>
            <button type="button" className="button button--primary" onClick={load}>
              Try again
            </button>
          </div>
        </main>
      );
    case "anonymous":
      return <LoginPage notice={session.notice} onLoggedIn={onLoggedIn} />;
    case "ready":
      // Keyed by who it is for: another user's session starts with nothing of this one's.
      return (
        <LiveSession key={`${session.me.tenant_id}/${session.me.email}`} me={session.me} onLogout={onLogout}>
          <Shell>
            <RoutedPage route={route} />
          </Shell>
        </LiveSession>
      );
  }
}

/**
 * What every page of the session shares: the header, the announcer of new critical alerts
 * (here, not on one page, so that they are heard whichever page is open), the card that says
 * when the gateway refuses the session's live updates, and the page itself.
 */
export function Shell({ children }: { children: ReactNode }) {
  return (
    <div className="shell">
      <Header />
      <Announcer />
      <main className="shell__main">
        <LiveRefusedNotice />
        {children}
      </main>
    </div>
  );
}

/** Page titles, for the tab and for screen readers announcing the navigation. */
function titleOf(route: Route): string {
  switch (route.page) {
    case "device":
      return `${route.deviceId} · Pulse`;
    case "not-found":
      return "Not found · Pulse";
    default:
      return "Fleet overview · Pulse";
  }
}

/**
 * The page of `route`. After an in-app navigation (not on the first render) focus moves to the
 * new page's heading, as a full page load would put a screen reader at the top of the new page,
 * and the document title follows the page.
 */
function RoutedPage({ route }: { route: Route }) {
  const key = route.page === "device" ? `device:${route.deviceId}` : route.page;
  const first = useRef(true);
  useEffect(() => {
    document.title = titleOf(route);
  }, [route]);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    document.querySelector<HTMLElement>("main h1")?.focus();
  }, [key]);
  return <Page route={route} />;
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "dashboard":
    case "login":
      return <DashboardPage />;
    case "device":
      return <DevicePage key={route.deviceId} deviceId={route.deviceId} />;
    case "not-found":
      return <NotFoundPage path={route.path} />;
  }
}
