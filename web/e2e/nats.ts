/**
 * Publishes one raw message on NATS with the plain text protocol, standing in for a broken
 * publisher: the gateways forward whatever arrives on a subject, byte for byte.
 */

import { connect } from "node:net";

export async function natsPublish(natsUrl: string, subject: string, payload: string): Promise<void> {
  const url = new URL(natsUrl.split(",")[0]!);
  const socket = connect({ host: url.hostname, port: Number(url.port || 4222) });
  const body = Buffer.from(payload, "utf8");
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    let sent = false;
    const timer = setTimeout(() => fail(new Error("NATS did not answer within 5 s")), 5_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.on("error", fail);
    socket.on("data", (chunk) => {
      seen += chunk.toString("utf8");
      if (!sent && seen.includes("INFO ")) {
        sent = true;
        socket.write(`CONNECT {"verbose":false,"pedantic":false,"name":"pulse-browser-test"}\r\n`);
        socket.write(`PUB ${subject} ${body.length}\r\n`);
        socket.write(body);
        socket.write("\r\nPING\r\n");
      }
      if (seen.includes("-ERR")) fail(new Error(`NATS refused: ${seen.trim()}`));
      else if (sent && seen.includes("PONG")) {
        clearTimeout(timer);
        socket.end();
        resolve();
      }
    });
  });
}
