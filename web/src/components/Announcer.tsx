import type { Announcement } from "../app/liveStore.js";
import { useLive } from "../app/session.js";

/**
 * Reads new critical alerts out to screen readers, politely and at most every 10 s, on every
 * page: it is mounted once, in the app shell.
 */
export function Announcer() {
  return <LiveRegion announcement={useLive((s) => s.announcement)} />;
}

/**
 * The live region itself. The region stays in place (a region added with its text is often not
 * read); each announcement is a new child, keyed by its id, so that a text equal to the one
 * before is still a change the screen reader hears.
 */
export function LiveRegion({ announcement }: { announcement: Announcement | null }) {
  return (
    <div className="visually-hidden" aria-live="polite" data-testid="announcer">
      {announcement && (
        <span key={announcement.id} data-announcement={announcement.id}>
          {announcement.text}
        </span>
      )}
    </div>
  );
}
