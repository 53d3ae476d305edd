/**
 * Compile-time checks that the client's hand-written reply and request types agree with the
 * generated contract. They stay hand-written on purpose: they leave room for error codes and
 * reset reasons added within `v1` (`string & {}`).
 *
 * @packageDocumentation
 */

import type { ClientRequest, ServerReply } from "../types.js";
import type { ClientRequest as WireClientRequest } from "./client-request.gen.js";
import type { ServerReply as WireServerReply } from "./server-reply.gen.js";

/** `A`, when every `A` is a `B`; a compile error otherwise. */
type Assignable<A extends B, B> = A;

/** Every request the client can build is one the contract allows. */
export type RequestsAllowed = Assignable<ClientRequest, WireClientRequest>;

/**
 * A reply as the client hands it on: an `error`'s channel fields (`channel` and `device_id` or
 * `topic`, flat on the wire) become one `channel` object, as `subscribed` names it.
 */
type AsParsed<R> = R extends { type: "error"; channel: string }
  ? Omit<R, ChannelField> & { channel: Pick<R, Extract<keyof R, ChannelField>> }
  : R;

/** The fields of a channel, flat in an `error` reply. */
type ChannelField = "channel" | "device_id" | "topic";

/** Every reply the contract allows is one the client describes. */
export type RepliesDescribed = Assignable<AsParsed<WireServerReply>, ServerReply>;
