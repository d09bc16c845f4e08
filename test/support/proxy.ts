// Test fixture: run HeliosProxy as a real process on free ports with a generated config.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort, waitForPort } from "../../src/util/net.ts";

export { freePort, waitForPort };

const ROOT = join(import.meta.dir, "..", "..");
export const BUN = process.execPath;
export const PG_HOST = "127.0.0.1";
export const PG_PORT = 5432;

export interface ProxyOptions {
  /** Extra TOML appended after the generated [proxy]/[pool]/[[nodes]] sections. */
  toml?: string;
  mode?: "session" | "transaction" | "statement";
  maxConnections?: number;
  minConnections?: number;
  /** Replace the [pool] section body entirely (keys after `mode`). */
  poolExtra?: string;
  /** Replace the whole [[nodes]] list. */
  nodes?: { host: string; port: number; role?: string }[];
  env?: Record<string, string>;
}

export interface RunningProxy {
  port: number;
  adminPort: number;
  configPath: string;
  proc: Subprocess;
  /** Everything the process wrote to stderr/stdout so far. */
  output(): string;
  /** A libpq connection string to the proxy. */
  url(db?: string, user?: string): string;
  stop(signal?: NodeJS.Signals): Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Write `config` to a temp file and return its path. */
export function writeConfig(config: string): string {
  const dir = mkdtempSync(join(tmpdir(), "helios-test-"));
  const path = join(dir, "proxy.toml");
  writeFileSync(path, config);
  return path;
}

export function configText(port: number, adminPort: number, o: ProxyOptions = {}): string {
  const nodes = o.nodes ?? [{ host: PG_HOST, port: PG_PORT, role: "primary" }];
  return [
    "[proxy]",
    `listen_address = "127.0.0.1:${port}"`,
    `admin_address = "127.0.0.1:${adminPort}"`,
    `log_level = "warn"`,
    "[pool]",
    `mode = "${o.mode ?? "transaction"}"`,
    `max_connections = ${o.maxConnections ?? 10}`,
    `min_connections = ${o.minConnections ?? 0}`,
    o.poolExtra ?? "",
    ...nodes.flatMap((n) => ["[[nodes]]", `host = "${n.host}"`, `port = ${n.port}`, `role = "${n.role ?? "primary"}"`]),
    o.toml ?? "",
  ].join("\n");
}

/** Start the proxy (`bun src/cli/main.ts --config FILE`) and wait for its ports. */
export async function startProxy(o: ProxyOptions = {}): Promise<RunningProxy> {
  const port = freePort();
  const adminPort = freePort();
  const configPath = writeConfig(configText(port, adminPort, o));
  return startProxyWithConfig(configPath, port, adminPort, o.env);
}

/** Start the proxy on a config file; returns once `port` and `adminPort` (when not 0) accept connections. */
export async function startProxyWithConfig(
  configPath: string,
  port: number,
  adminPort = 0,
  env: Record<string, string> = {},
): Promise<RunningProxy> {
  let out = "";
  const proc = Bun.spawn([BUN, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts"), "--config", configPath], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const c of s) out += dec.decode(c);
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  try {
    // A proxy that exits at start-up (bad config, port taken) fails at once, not after the wait.
    const exited = proc.exited.then((code) => {
      throw new Error(`exited with code ${code} before listening`);
    });
    exited.catch(() => {});
    const listening = (async () => {
      await waitForPort(port);
      // The admin API binds a few ms after the client listener.
      if (adminPort > 0) await waitForPort(adminPort);
    })();
    await Promise.race([listening, exited]);
  } catch (e) {
    proc.kill();
    throw new Error(`proxy did not start: ${(e as Error).message}\n${out}`);
  }
  const running: RunningProxy = {
    port,
    adminPort,
    configPath,
    proc,
    output: () => out,
    url: (db = "test", user = "postgres") => `postgresql://${user}@127.0.0.1:${port}/${db}`,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill("SIGKILL"), 10000);
      const code = await proc.exited;
      clearTimeout(t);
      // An impossible state transition is a bug even when the proxy carried on: the run that logged one fails.
      const bug = /bug: impossible state transition refused.*/.exec(out);
      if (bug !== null) throw new Error(`the proxy logged a state machine bug: ${bug[0]}`);
      return code;
    },
    async [Symbol.asyncDispose]() {
      await running.stop();
    },
  };
  return running;
}

/** Run psql against a port; returns stdout, stderr and the exit code. */
export async function psql(port: number, args: string[], opts: { db?: string; user?: string; input?: string; env?: Record<string, string> } = {}) {
  const proc = Bun.spawn(["psql", "-X", "-h", "127.0.0.1", "-p", String(port), "-U", opts.user ?? "postgres", "-d", opts.db ?? "test", ...args], {
    stdin: opts.input !== undefined ? new TextEncoder().encode(opts.input) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, PGCONNECT_TIMEOUT: "10", ...opts.env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout, stderr, code };
}
