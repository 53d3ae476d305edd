/** The Pulse mark: a heartbeat line. */
export function Logo() {
  return (
    <svg className="logo" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
      <rect x="0.5" y="0.5" width="23" height="23" rx="5" className="logo__box" />
      <path d="M3 13h4l2-5 3 9 2.5-6 1.5 2H21" className="logo__line" />
    </svg>
  );
}
