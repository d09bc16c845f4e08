// `heliosproxy demo` end to end: a 3-node cluster (or, embedded, one PGlite node) behind the proxy serves writes and reads, and Ctrl-C removes everything.

import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { portInUse } from "../../src/devcluster/pg-bin.ts";
import { psql } from "../support/proxy.ts";

const ROOT = join(import.meta.dir, "..", "..");
const NODE = Bun.which("node");
/** The README's `npx heliosproxy demo` runs bin/heliosproxy.cjs under Node; without Node, the CLI under Bun. */
const LAUNCH = NODE ? [NODE, join(ROOT, "bin/heliosproxy.cjs")] : [process.execPath, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts")];

test("config/demo.toml validates on its own", () => {
  const r = Bun.spawnSync([...LAUNCH, "check-config", "--config", join(ROOT, "config/demo.toml")], { stdout: "pipe", stderr: "pipe" });
  expect(r.stderr.toString()).toBe("");
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toContain("load balancer: round_robin, read/write split");
});

/** `heliosproxy demo --port 0 --admin-port 0` running until "Press Ctrl-C" (or a failure, thrown with its output). */
async function startDemo(env: Record<string, string> = {}, upWithinMs = 45000) {
  const proc = Bun.spawn([...LAUNCH, "demo", "--port", "0", "--admin-port", "0"], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const io = { out: "", err: "" };
  const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const dec = new TextDecoder();
    for await (const c of s) add(dec.decode(c));
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>, (t) => (io.out += t));
  void pump(proc.stderr as ReadableStream<Uint8Array>, (t) => (io.err += t));
  const deadline = Date.now() + upWithinMs;
  while (!io.out.includes("Press Ctrl-C") && proc.exitCode === null && Date.now() < deadline) await Bun.sleep(50);
  const stop = async () => {
    // SIGINT first: killing the Node wrapper outright would leave the demo itself running.
    if (proc.exitCode === null) {
      proc.kill("SIGINT");
      await Promise.race([proc.exited, Bun.sleep(15000)]);
    }
    if (proc.exitCode === null) proc.kill("SIGKILL");
  };
  if (!io.out.includes("Press Ctrl-C")) {
    await stop();
    throw new Error(`the demo did not come up\n--- stdout ---\n${io.out}\n--- stderr ---\n${io.err}`);
  }
  const url = /psql (postgresql:\/\/postgres@127\.0\.0\.1:(\d+)\/demo)\n/.exec(io.out);
  const dashboard = /dashboard: +(http:\/\/127\.0\.0\.1:(\d+)\/)\n/.exec(io.out);
  expect(url).not.toBeNull();
  expect(dashboard).not.toBeNull();
  return {
    proc,
    io,
    url: url![1]!,
    proxyPort: Number(url![2]),
    dashboard: dashboard![1]!,
    adminPort: Number(dashboard![2]),
    nodePorts: [...io.out.matchAll(/node\d (primary|sync standby|async standby) :(\d+)/g)].map((m) => ({ role: m[1]!, port: Number(m[2]) })),
    stop,
    /** Ctrl-C: exit 0, "demo: done", and every port given back. */
    async interrupt() {
      proc.kill("SIGINT");
      const code = await Promise.race([proc.exited, Bun.sleep(30000).then(() => "timeout")]);
      expect(code).toBe(0);
      expect(io.out).toContain("demo: done");
      for (const p of [this.proxyPort, this.adminPort, ...this.nodePorts.map((n) => n.port)]) expect({ port: p, inUse: await portInUse(p) }).toEqual({ port: p, inUse: false });
    },
  };
}

test("demo: prints the connection string and dashboard, serves a write and a read, and Ctrl-C removes the cluster", async () => {
  const demo = await startDemo();
  try {
    const { io, nodePorts } = demo;
    const dataDir = /data: +(\S+)/.exec(io.out)?.[1];
    expect(io.out).toContain("mode:       cluster: PostgreSQL from ");
    expect(existsSync(dataDir!)).toBe(true);
    expect(nodePorts.map((n) => n.role)).toEqual(["primary", "sync standby", "async standby"]);

    const client = new pg.Client({ connectionString: demo.url, connectionTimeoutMillis: 10000 });
    await client.connect();
    try {
      const w = await client.query("INSERT INTO accounts (owner, balance) VALUES ('demo test', 1) RETURNING id, inet_server_port() AS p");
      expect(w.rows[0].p).toBe(nodePorts[0]!.port);
      const r = await client.query("SELECT count(*)::int AS n, inet_server_port() AS p FROM accounts");
      expect(r.rows[0].n).toBeGreaterThanOrEqual(1000);
      expect([nodePorts[1]!.port, nodePorts[2]!.port]).toContain(r.rows[0].p);
    } finally {
      await client.end();
    }
    const page = await fetch(demo.dashboard);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const nodes = (await (await fetch(`${demo.dashboard}nodes`)).json()) as { nodes: { state: string }[] };
    expect(nodes.nodes.map((n) => n.state)).toEqual(["up", "up", "up"]);

    await demo.interrupt();
    expect(existsSync(dataDir!)).toBe(false);
  } finally {
    await demo.stop();
  }
}, 90000);

test("demo, embedded (HELIOSPROXY_DEMO_EMBEDDED=1, as when no server binaries are installed): one PGlite node says so, and pg, psql and pgbench -S work through the proxy", async () => {
  // PGlite compiles its WebAssembly at start: slow on a busy machine.
  const demo = await startDemo({ HELIOSPROXY_DEMO_EMBEDDED: "1" }, 150000);
  try {
    const { io } = demo;
    expect(io.out).toMatch(/mode: +embedded: PostgreSQL \d+\.\d+ \(PGlite [\d.]+\) in this process, one node \(no standbys: replication, failover and read\/write split are not shown\)/);
    expect(demo.nodePorts.map((n) => n.role)).toEqual(["primary"]);
    expect(io.out).toContain("data:       in memory");

    const client = new pg.Client({ connectionString: demo.url, connectionTimeoutMillis: 10000 });
    await client.connect();
    try {
      const w = await client.query("INSERT INTO accounts (owner, balance) VALUES ($1, $2) RETURNING id", ["embedded test", 5]);
      expect(w.rows[0].id).toBe(1001);
      const r = await client.query("SELECT count(*)::int AS n, version() AS v FROM accounts");
      expect(r.rows[0].n).toBe(1001);
      expect(r.rows[0].v).toContain("PGlite");
    } finally {
      await client.end();
    }
    const viaPsql = await psql(demo.proxyPort, ["-At", "-c", "SELECT owner FROM accounts WHERE id = 1001"], { db: "demo" });
    expect(viaPsql).toEqual({ stdout: "embedded test\n", stderr: "", code: 0 });

    // pgbench: tables generated server-side (no COPY, no VACUUM), then a short select-only run from 4 clients.
    const init = Bun.spawnSync(["pgbench", "-i", "-I", "dtGp", "-s", "1", demo.url], { stdout: "pipe", stderr: "pipe" });
    expect({ code: init.exitCode, err: init.stderr.toString().includes("error") }).toEqual({ code: 0, err: false });
    const run = Bun.spawnSync(["pgbench", "-S", "-n", "-t", "200", "-c", "4", "-M", "prepared", demo.url], { stdout: "pipe", stderr: "pipe" });
    const report = run.stdout.toString();
    expect(run.exitCode).toBe(0);
    expect(report).toContain("number of transactions actually processed: 800/800");
    expect(report).toContain("number of failed transactions: 0 (0.000%)");

    const nodes = (await (await fetch(`${demo.dashboard}nodes`)).json()) as { nodes: { state: string; role: string }[] };
    expect(nodes.nodes.map((n) => [n.role, n.state])).toEqual([["primary", "up"]]);
    await demo.interrupt();
  } finally {
    await demo.stop();
  }
}, 240000);
