/**
 * Pushes the client refused because their envelope broke the contract never reach `watch`; the
 * client reports each on its `error` topic, naming the held channel it was for. A widget follows
 * its own channel's here, to say an update was refused rather than go on as if none came.
 *
 * @packageDocumentation
 */

import { channelTopic, type Channel, type PulseClient } from "../client/index.js";

/**
 * Calls `onRefused` with the client's words for each refused push of `channel`. Returns a
 * function that stops.
 */
export function watchRefusedPushes(client: PulseClient, channel: Channel, onRefused: (error: string) => void): () => void {
  const topic = channelTopic(channel);
  return client.on("error", (error) => {
    if (error.kind === "malformed_message" && error.channel && channelTopic(error.channel) === topic) onRefused(error.message);
  });
}
