/**
 * Compile-time checks that the client's hand-written reply and request types agree with the
 * generated contract. They stay hand-written on purpose: they leave room for error codes and
 * reset reasons added within `v1` (`string & {}`), and describe replies after parsing (a `seq`
 * the gateway leaves out is absent, never `null`).
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

/** Every reply the contract allows (a `null` seq read as absent) is one the client describes. */
export type RepliesDescribed = Assignable<NullAsAbsent<WireServerReply>, ServerReply>;

type NullAsAbsent<T> = T extends { seq?: infer S } ? Omit<T, "seq"> & { seq?: Exclude<S, null> } : T;
