import type { ReactNode } from "react";

import { ErrorBoundary } from "./ErrorBoundary.js";

/** A dashboard panel with a title; whatever fails inside it stays inside it. */
export function Widget(props: { title: string; testId: string; actions?: ReactNode; className?: string; children: ReactNode }) {
  return (
    <section className={`widget ${props.className ?? ""}`} data-testid={props.testId} aria-label={props.title}>
      <ErrorBoundary label={props.title}>
        <header className="widget__head">
          <h2 className="widget__title">{props.title}</h2>
          {props.actions && <div className="widget__actions">{props.actions}</div>}
        </header>
        <div className="widget__body">{props.children}</div>
      </ErrorBoundary>
    </section>
  );
}
