/**
 * Test doubles for the client: a scriptable WebSocket, a ticket source and a network monitor.
 * Used by the unit tests only.
 */

import { vi } from "vitest";

import type { SocketLike } from "../connection.js";
import { alwaysOnline, PulseClient } from "../index.js";
import type { NetworkMonitor, VisibilityMonitor } from "../network.js";
import type { Channel, ClientRequest, Ticket } from "../types.js";

/** WebSocket ready states, as in the browser. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

/**
 * A WebSocket whose server side the test plays: {@link FakeWebSocket.accept} opens it,
 * {@link FakeWebSocket.push} delivers a frame, {@link FakeWebSocket.serverClose} closes it.
 * Like a browser socket, `send` throws while the socket is still connecting; like a gateway, it
 * answers pings with pongs unless {@link FakeWebSocket.autoPong} is turned off.
 */
export class FakeWebSocket implements SocketLike {
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  readyState = CONNECTING;
  /** Every text frame the client sent, in order. */
  readonly sent: string[] = [];
  /** Answer `{"action":"ping"}` with `{"type":"pong"}`, as a gateway does. */
  autoPong = true;
  /** Set when the client called `close()`. */
  closedByClient: { code: number | undefined; reason: string | undefined } | undefined;

  constructor(
    readonly url: string,
    /** The subprotocols the client offered, if any. */
    readonly protocols?: string | string[],
  ) {}

  send(data: string): void {
    if (this.readyState === CONNECTING) throw new Error("InvalidStateError: still connecting");
    if (this.readyState !== OPEN) return; // browsers drop frames sent on a closing socket
    this.sent.push(data);
    if (this.autoPong && data === '{"action":"ping"}') {
      queueMicrotask(() => {
        if (this.readyState === OPEN) this.push({ type: "pong" });
      });
    }
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    if (this.readyState === OPEN || this.readyState === CONNECTING) this.readyState = CLOSING;
  }

  // ---- the server side ----

  /** The upgrade succeeded. */
  accept(): void {
    this.readyState = OPEN;
    this.onopen?.({});
  }

  /** The server sends a frame: an object is sent as JSON, a string as is. */
  push(frame: unknown): void {
    const data = typeof frame === "string" || frame instanceof ArrayBuffer ? frame : JSON.stringify(frame);
    this.onmessage?.({ data });
  }

  /** The connection ends with `code` (1006 stands for "no close frame"). */
  serverClose(code: number, reason = ""): void {
    this.readyState = CLOSED;
    this.onerror?.({});
    this.onclose?.({ code, reason });
  }

  /** The sent frames, parsed. */
  get requests(): ClientRequest[] {
    return this.sent.map((s) => JSON.parse(s) as ClientRequest);
  }

  /** The subscribe and unsubscribe requests sent, in order (no pings, no renewals). */
  get channelRequests(): ClientRequest[] {
    return this.requests.filter((r) => r.action === "subscribe" || r.action === "unsubscribe");
  }

  /** The token the client sent: as the `pulse.ticket.` subprotocol, or in the URL's query. */
  get token(): string | null {
    const offered = Array.isArray(this.protocols) ? this.protocols : this.protocols ? [this.protocols] : [];
    const ticket = offered.find((p) => p.startsWith("pulse.ticket."));
    return ticket ? ticket.slice("pulse.ticket.".length) : new URL(this.url).searchParams.get("token");
  }

  /** True while nothing detached the client's handlers. */
  get attached(): boolean {
    return this.onmessage !== null;
  }
}

/** A WebSocket constructor that records every socket it makes. */
export function socketFactory(): {
  WebSocket: new (url: string, protocols?: string | string[]) => FakeWebSocket;
  sockets: FakeWebSocket[];
  last(): FakeWebSocket;
} {
  const sockets: FakeWebSocket[] = [];
  class RecordingSocket extends FakeWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  return {
    WebSocket: RecordingSocket,
    sockets,
    last() {
      const s = sockets[sockets.length - 1];
      if (!s) throw new Error("no socket was created");
      return s;
    },
  };
}

/**
 * Runs the fake timers 100 ms at a time until `factory` made one socket more, and returns it
 * (unopened). Advancing by a fixed time instead may end between a timed-out attempt and the
 * next one, so the test would open a socket the client already gave up.
 */
export async function nextSocketOf(factory: ReturnType<typeof socketFactory>, maxMs = 60_000): Promise<FakeWebSocket> {
  const before = factory.sockets.length;
  for (let waited = 0; factory.sockets.length === before && waited <= maxMs; waited += 100) {
    await vi.advanceTimersByTimeAsync(100);
    await settle();
  }
  if (factory.sockets.length === before) throw new Error(`no new socket within ${maxMs} ms`);
  return factory.last();
}

/**
 * A `getTicket` mock handing out `t1`, `t2`, ... valid for `lifetimeSeconds` from the current
 * (fake) time, listing `gateways`.
 */
export function ticketSource(
  gateways: string[] = ["ws://gw-a.test/api/v2/ws", "ws://gw-b.test/api/v2/ws"],
  lifetimeSeconds = 60,
  /** `expiresIn`: send `expires_in` too; `serverAhead`: seconds the server's clock is ahead of this one. */
  { expiresIn = false, serverAhead = 0 }: { expiresIn?: boolean; serverAhead?: number } = {},
) {
  let n = 0;
  return vi.fn(async (): Promise<Ticket> => {
    n += 1;
    return {
      token: `t${n}`,
      expires_at: Math.floor(Date.now() / 1000) + serverAhead + lifetimeSeconds,
      ...(expiresIn ? { expires_in: lifetimeSeconds } : {}),
      gateways: [...gateways],
    };
  });
}

/**
 * A client as the app's code gets one, on recorded fake sockets, always online, with tickets from
 * {@link ticketSource}. `connect` subscribes it to `channels`, starts it and has the gateway
 * accept its first socket.
 */
export function fakeClient(): {
  client: PulseClient;
  sockets: ReturnType<typeof socketFactory>;
  connect(...channels: Channel[]): Promise<void>;
} {
  const sockets = socketFactory();
  const client = new PulseClient({ getTicket: ticketSource(), WebSocket: sockets.WebSocket, network: alwaysOnline });
  return {
    client,
    sockets,
    async connect(...channels) {
      for (const channel of channels) client.subscribe(channel);
      client.start();
      await settle();
      sockets.last().accept();
    },
  };
}

/** A network monitor the test switches on and off. */
export class FakeNetwork implements NetworkMonitor {
  online = true;
  private readonly listeners = new Set<(online: boolean) => void>();

  isOnline(): boolean {
    return this.online;
  }

  watch(listener: (online: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(online: boolean): void {
    this.online = online;
    for (const listener of [...this.listeners]) listener(online);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }
}

/** Lets pending promise callbacks run (fake timers do not advance). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await Promise.resolve();
}

/** A page the test hides and shows. */
export class FakeVisibility implements VisibilityMonitor {
  private readonly listeners = new Set<() => void>();

  watchVisible(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The tab is shown again. */
  show(): void {
    for (const l of [...this.listeners]) l();
  }
}
