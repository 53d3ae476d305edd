import { Component, type ErrorInfo, type ReactNode } from "react";

import { ErrorCard } from "./ErrorCard.js";

interface Props {
  /** Names the widget in the error card. */
  label: string;
  children: ReactNode;
}

/**
 * Keeps a failing widget from taking the page down: a render error shows an error card in its
 * place, with a retry; every other widget keeps running.
 */
export class ErrorBoundary extends Component<Props, { error: Error | null }> {
  override state: { error: Error | null } = { error: null };

  static getDerivedStateFromError(error: unknown): { error: Error } {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  override componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error(`pulse: the ${this.props.label} widget failed`, error, info.componentStack);
  }

  override render(): ReactNode {
    if (this.state.error) {
      return (
        <ErrorCard
          title={`${this.props.label} stopped working`}
          message={this.state.error.message}
          onRetry={() => this.setState({ error: null })}
        />
      );
    }
    return this.props.children;
  }
}
