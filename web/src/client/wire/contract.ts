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

/** Every reply the contract allows is one the client describes. */
export type RepliesDescribed = Assignable<WireServerReply, ServerReply>;
