// A peer for pulse-bench: the WebSocket fan-out a team would write with Node's `ws` and the
// NATS client, speaking the part of Pulse's protocol the bench's broadcast load uses. The bench
// drives it exactly as it drives a gateway (`--gateway ws://127.0.0.1:<port>/api/v2/ws
// --gateway-pid <pid>`), so the two are measured under the same tool and load.
//
// What it does, as the gateway does: checks the HS256 ticket in `?token=` (PULSE_JWT_SECRET),
// subscribes to NATS once per subject however many clients hold it, and sends each message
// to every subscriber as one text frame made once. What it leaves out: the current value on
// subscribe, ordering by `seq`, per-client queues with conflation, rate limits, caps, pings
// and ops endpoints.
//
//   PORT (8091; 0 for any free port, said on stdout), NATS_URL (nats://127.0.0.1:4222), PULSE_JWT_SECRET (required)
import { createHmac, timingSafeEqual } from "node:crypto";

import { connect } from "nats";
import { WebSocketServer } from "ws";

const port = Number(process.env.PORT ?? 8091);
const secret = process.env.PULSE_JWT_SECRET;
if (!secret) {
  console.error("set PULSE_JWT_SECRET: the tickets' HS256 secret");
  process.exit(2);
}
const nats = await connect({ servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(",") });

/** The ticket's tenant, when its signature and expiry hold. */
function tenantOf(token) {
  const [header, payload, signature] = (token ?? "").split(".");
  if (!header || !payload || !signature) return null;
  const expected = createHmac("sha256", secret).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) return null;
    return typeof claims.tenant_id === "string" ? claims.tenant_id : null;
  } catch {
    return null;
  }
}

/** Per subject: its NATS subscription and the sockets that hold it. */
const subjects = new Map();
/** A socket with more than this waiting to be written is skipped for a message: bounded memory. */
const MAX_BUFFERED = 1 << 20;

function join(subject, socket) {
  let entry = subjects.get(subject);
  if (!entry) {
    const sockets = new Set();
    const subscription = nats.subscribe(subject);
    entry = { sockets, subscription };
    subjects.set(subject, entry);
    (async () => {
      for await (const message of subscription) {
        // One frame's bytes for every subscriber; `binary: false` sends them as text.
        const frame = Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
        for (const s of sockets) {
          if (s.bufferedAmount <= MAX_BUFFERED) s.send(frame, { binary: false });
        }
      }
    })().catch((error) => console.error(`subscription to ${subject} ended: ${error}`));
  }
  entry.sockets.add(socket);
}

function leave(subject, socket) {
  const entry = subjects.get(subject);
  if (!entry) return;
  entry.sockets.delete(socket);
  if (entry.sockets.size === 0) {
    entry.subscription.unsubscribe();
    subjects.delete(subject);
  }
}

const server = new WebSocketServer({ port, maxPayload: 64 * 1024 });
server.on("connection", (socket, request) => {
  const token = new URL(request.url ?? "/", "http://peer").searchParams.get("token");
  const tenant = tenantOf(token);
  if (!tenant) {
    socket.close(4001, "invalid token");
    return;
  }
  const held = new Set();
  // A frame the library refuses (too big, not UTF-8) ends that socket, not the process.
  socket.on("error", () => socket.terminate());
  socket.on("message", (data) => {
    let request;
    try {
      request = JSON.parse(data.toString("utf8"));
    } catch {
      socket.send(JSON.stringify({ type: "error", code: "invalid_json" }));
      return;
    }
    if (request.action !== "subscribe" || request.type !== "alerts") {
      socket.send(JSON.stringify({ type: "error", code: "unknown_action" }));
      return;
    }
    const subject = `pulse.v1.${tenant}.alerts`;
    if (!held.has(subject)) {
      held.add(subject);
      join(subject, socket);
    }
    socket.send(JSON.stringify({ type: "subscribed", channel: "alerts" }));
  });
  socket.on("close", () => {
    for (const subject of held) leave(subject, socket);
  });
});
// The port it listens on (the kernel's pick with PORT=0), said once it listens.
server.on("listening", () => console.log(`node-ws peer on :${server.address().port}`));
