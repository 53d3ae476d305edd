/**
 * Pushes the client refused because their envelope broke the contract never reach `watch`; the
 * client reports each on its `error` topic, naming the held channel it was for. A widget follows
 * its own channel's here, to say an update was refused rather than go on as if none came.
 *
 * @packageDocumentation
 */

import type { Channel, PulseClient } from "../client/index.js";

/**
 * Calls `onRefused` with the channel and the client's words for each refused push whose channel
 * `matches`. Returns a function that stops.
 */
export function watchRefusedPushes(
  client: PulseClient,
  matches: (channel: Channel) => boolean,
  onRefused: (channel: Channel, error: string) => void,
): () => void {
  return client.on("error", (error) => {
    if (error.kind !== "malformed_message" || !error.channel || !matches(error.channel)) return;
    onRefused(error.channel, error.message);
  });
}
