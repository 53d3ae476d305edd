/**
 * A private Pulse stack for the browser tests: its own PostgreSQL database
 * (`pulse_t_browser_<random>`), its own tenant id (so its NATS subjects are its own), one poller,
 * two gateways and pulse-web on free ports, all from the debug binaries cargo built (in
 * `$CARGO_TARGET_DIR/debug` when that is set, as for cargo itself, else target/debug); and,
 * when asked, a nats-server of its own.
 *
 * Everything it starts is stopped by {@link Stack.stop}, which the tests call in `afterAll`
 * (so also when a test fails). As a last resort the process ids and the database name are
 * written to test-artifacts/browser/leftovers-<stack name>.txt (one file a stack, as stacks of
 * several test files run at once), which scripts/test-web.sh cleans up after a crash.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import pg from "pg";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "browser");
const LOGS = join(ARTIFACTS, "logs");
/** Where a stack records what to clean up should its test process die. */
const leftoversOf = (name: string) => join(ARTIFACTS, `leftovers-${name}.txt`);

const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
/** Ports `make up` uses by default; never taken here. */
const RESERVED_PORTS = new Set([8080, 8081, 8082, 9080, 9090, 9091]);

export interface StackOptions {
  /** Names the folder of its service logs: test-artifacts/browser/logs/<name>/. */
  name: string;
  /** Devices the seeded tenant gets. */
  devices: number;
  sites: number;
  /** Extra environment for the poller (caps, intervals). */
  pollerEnv?: Record<string, string>;
  /** Extra environment for both gateways (limits, timeouts). */
  gatewayEnv?: Record<string, string>;
  /** Extra environment for pulse-web (ticket lifetime). */
  webEnv?: Record<string, string>;
  /**
   * With a value, the stack runs a private nats-server (JetStream on) whose `max_payload` is
   * this many bytes, for snapshots bigger than the shared server's default 1 MiB allows.
   */
  natsMaxPayload?: number;
}

/** A running stack. */
export interface Stack {
  webUrl: string;
  tenant: string;
  email: string;
  password: string;
  natsUrl: string;
  /** Connected to the stack's database as its owner. */
  db: pg.Client;
  /** SIGKILLs every gateway and waits until they are gone. */
  killGateways(): Promise<void>;
  /** The gateways' ports, gateway 0 first. */
  gatewayPorts: number[];
  /** Sends gateway `index` SIGTERM, as a rolling restart does, and waits until it has drained and exited. */
  drainGateway(index: number): Promise<void>;
  /** Starts gateway `index` (0 or 1) again on its port and waits until it is ready. */
  startGateway(index: number): Promise<void>;
  /** Stops every process and drops the database. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The lowest port the kernel hands out for outgoing connections: a port picked below it cannot
 * be taken by one of the many connections the tests open between the pick and the bind.
 */
function ephemeralLow(): number {
  try {
    const low = Number.parseInt(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0] ?? "", 10);
    return Number.isFinite(low) && low > 20_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** Whether something could listen on `port` right now (a moment ago, it could). */
function canListen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const server = createServer();
    server.once("error", () => res(false));
    server.listen(port, "127.0.0.1", () => server.close(() => res(true)));
  });
}

/**
 * A port nobody listens on right now, below the ephemeral range ({@link ephemeralLow}): a
 * port the kernel picked (`listen(0)`) comes from that range, and an outgoing connection could
 * take it before the service binds it.
 */
async function freePort(): Promise<number> {
  const low = 20_000;
  const span = ephemeralLow() - low;
  for (;;) {
    const port = low + Math.floor(Math.random() * span);
    if (!RESERVED_PORTS.has(port) && (await canListen(port))) return port;
  }
}

function binary(name: string): string {
  // A relative CARGO_TARGET_DIR is relative to where cargo ran: the repository, for the scripts.
  const target = resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || "target");
  const dir = process.env.PULSE_BIN_DIR ?? join(target, "debug");
  const path = join(dir, name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it with \`cargo build -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator\` (scripts/test-web.sh does)`);
  }
  return path;
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `GET http://127.0.0.1:<port>/readyz` answers 200, or fails naming the process. */
async function waitReady(name: string, port: number, child: ChildProcess, log: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) during start:\n${tail(log)}`);
    }
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`${name} was not ready within ${timeoutMs} ms:\n${tail(log)}`);
}

/** Waits until something accepts TCP connections on `port`, or fails naming the process. */
async function waitListening(name: string, port: number, child: ChildProcess, log: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) during start:\n${tail(log)}`);
    }
    const open = await new Promise<boolean>((res) => {
      const socket = connect({ host: "127.0.0.1", port }, () => {
        socket.end();
        res(true);
      });
      socket.once("error", () => res(false));
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms:\n${tail(log)}`);
}

function recordLeftover(leftovers: string, line: string): void {
  appendFileSync(leftovers, `${line}\n`);
}

/**
 * When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`):
 * with its id, it names the process for good, where the id alone may name another one later.
 * Empty without `/proc`.
 */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The fields after the command name, which is in parentheses and may hold anything.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

/** Runs a command to completion; throws with its log when it fails. */
async function runToEnd(logs: string, name: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const log = join(logs, `${name}.log`);
  const fd = openSync(log, "a");
  try {
    const child = spawn(command, args, { env, stdio: ["ignore", fd, fd] });
    const code = await new Promise<number | null>((res, rej) => {
      child.once("error", rej);
      child.once("exit", (c) => res(c));
    });
    if (code !== 0) throw new Error(`${name} failed (exit ${code}):\n${tail(log)}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts a stack ({@link startStackOnce}); again, on fresh ports, when a service found its port
 * taken meanwhile (by another test's stack: ports are free when picked, not reserved).
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce(options);
    } catch (error) {
      if (attempt >= 3 || !String(error).includes("Address already in use")) throw error;
      console.warn(`${options.name}: a port was taken meanwhile; starting the stack again`);
    }
  }
}

async function startStackOnce(options: StackOptions): Promise<Stack> {
  const logs = join(LOGS, options.name);
  mkdirSync(logs, { recursive: true });
  const leftovers = leftoversOf(options.name);
  rmSync(leftovers, { force: true });
  const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  let natsUrl = process.env.NATS_URL || DEFAULT_NATS_URL;
  const suffix = randomBytes(5).toString("hex");
  const dbName = `pulse_t_browser_${suffix}`;
  const tenant = `browser-${suffix}`;
  const secret = randomBytes(32).toString("hex");

  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  recordLeftover(leftovers, `db ${dbName}`);
  const testUrl = new URL(databaseUrl);
  testUrl.pathname = `/${dbName}`;

  const children = new Map<string, { child: ChildProcess; port: number; log: string }>();
  let db: pg.Client | undefined;
  let stopped = false;

  const baseEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: testUrl.toString(),
    NATS_URL: natsUrl,
    PULSE_JWT_SECRET: secret,
    RUST_LOG: "info",
    PULSE_LOG_FORMAT: "text",
  };

  const launch = (name: string, command: string, args: string[], env: NodeJS.ProcessEnv, port: number) => {
    const log = join(logs, `${name}.log`);
    const fd = openSync(log, "a");
    const child = spawn(command, args, { env: { ...baseEnv, ...env }, stdio: ["ignore", fd, fd] });
    closeSync(fd);
    if (child.pid !== undefined) recordLeftover(leftovers, `pid ${child.pid} ${startTime(child.pid)}`.trimEnd());
    children.set(name, { child, port, log });
    return { child, log };
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await db?.end().catch(() => undefined);
    await Promise.all(
      [...children.values()].map(async ({ child }) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        child.kill("SIGTERM");
        const timedOut = await Promise.race([exited.then(() => false), sleep(5_000).then(() => true)]);
        if (timedOut) {
          child.kill("SIGKILL");
          await exited;
        }
      }),
    );
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((e: unknown) => console.warn(`could not drop ${dbName}:`, e));
    await admin.end().catch(() => undefined);
    rmSync(leftovers, { force: true });
  };
  // If the test process dies without running afterAll, do not leave processes behind.
  const killAll = () => {
    for (const { child } of children.values()) if (child.exitCode === null) child.kill("SIGKILL");
  };
  process.once("exit", killAll);

  try {
    if (options.natsMaxPayload !== undefined) {
      const port = await freePort();
      const conf = join(logs, "nats.conf");
      writeFileSync(conf, `max_payload: ${options.natsMaxPayload}\n`);
      const nats = launch("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(logs, "jetstream"), "-c", conf], {}, port);
      await waitListening("nats-server", port, nats.child, nats.log);
      natsUrl = `nats://127.0.0.1:${port}`;
      baseEnv.NATS_URL = natsUrl;
    }
    const poller = binary("pulse-poller");
    await runToEnd(logs, "migrate", poller, ["migrate"], baseEnv);
    await runToEnd(logs, "seed", binary("pulse-simulator"), ["--seed-only"], {
      ...baseEnv,
      PULSE_SIM_TENANTS: tenant,
      PULSE_SIM_DEVICES: String(options.devices),
      PULSE_SIM_SITES: String(options.sites),
    });

    const [pollerPort, webPort, webOpsPort, gw1, gw2] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const gatewayPorts = [gw1!, gw2!];
    const startPoller = launch("poller", poller, ["run"], {
      PULSE_POLLER_ADDR: `127.0.0.1:${pollerPort}`,
      PULSE_TELEMETRY_POLL_MS: "250",
      ...options.pollerEnv,
    }, pollerPort!);
    const gatewayBin = binary("pulse-gateway");
    const startGatewayProcess = (index: number) =>
      launch(`gateway-${index + 1}`, gatewayBin, [], { PULSE_GATEWAY_ADDR: `127.0.0.1:${gatewayPorts[index]}`, ...options.gatewayEnv }, gatewayPorts[index]!);
    const gateways = gatewayPorts.map((_, i) => startGatewayProcess(i));
    const web = launch(
      "web",
      binary("pulse-web"),
      [],
      {
        PULSE_WEB_ADDR: `127.0.0.1:${webPort}`,
        PULSE_WEB_OPS_ADDR: `127.0.0.1:${webOpsPort}`,
        PULSE_WEB_ROOT: join(REPO_ROOT, "web", "dist"),
        PULSE_GATEWAY_URLS: gatewayPorts.map((p) => `ws://127.0.0.1:${p}/api/v2/ws`).join(","),
        ...options.webEnv,
      },
      webPort!,
    );
    await Promise.all([
      waitReady("pulse-poller", pollerPort!, startPoller.child, startPoller.log),
      waitReady("pulse-web", webOpsPort!, web.child, web.log),
      ...gateways.map((g, i) => waitReady(`pulse-gateway ${i + 1}`, gatewayPorts[i]!, g.child, g.log)),
    ]);

    db = new pg.Client({ connectionString: testUrl.toString() });
    await db.connect();
    const connected = db;

    return {
      webUrl: `http://127.0.0.1:${webPort}`,
      tenant,
      email: `admin@${tenant}.example`,
      password: "pulse-demo",
      natsUrl,
      db: connected,
      async killGateways() {
        await Promise.all(
          gatewayPorts.map(async (_, i) => {
            const entry = children.get(`gateway-${i + 1}`);
            if (!entry || entry.child.exitCode !== null || entry.child.signalCode !== null) return;
            const exited = new Promise<void>((r) => entry.child.once("exit", () => r()));
            entry.child.kill("SIGKILL");
            await exited;
          }),
        );
      },
      gatewayPorts,
      async drainGateway(index: number) {
        const entry = children.get(`gateway-${index + 1}`);
        if (!entry || entry.child.exitCode !== null || entry.child.signalCode !== null) return;
        const exited = new Promise<void>((r) => entry.child.once("exit", () => r()));
        entry.child.kill("SIGTERM");
        await exited;
      },
      async startGateway(index: number) {
        const { child, log } = startGatewayProcess(index);
        await waitReady(`pulse-gateway ${index + 1}`, gatewayPorts[index]!, child, log);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Where a screenshot named `name` goes. */
export function artifact(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** Clears the artifacts of an earlier run (keeps the folder). */
export function resetArtifacts(): void {
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(LOGS, { recursive: true });
  writeFileSync(join(ARTIFACTS, "README.txt"), "Screenshots and service logs of the last browser test run (scripts/test-web.sh).\n");
}
