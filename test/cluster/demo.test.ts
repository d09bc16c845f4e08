// `heliosproxy demo` end to end: starts a 3-node cluster behind the proxy, serves writes and reads, and removes everything on Ctrl-C.

import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { portInUse } from "../../src/devcluster/pg-bin.ts";

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

test("demo: prints the connection string and dashboard, serves a write and a read, and Ctrl-C removes the cluster", async () => {
  const proc = Bun.spawn([...LAUNCH, "demo", "--port", "0", "--admin-port", "0"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  let out = "";
  let err = "";
  const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const dec = new TextDecoder();
    for await (const c of s) add(dec.decode(c));
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>, (t) => (out += t));
  void pump(proc.stderr as ReadableStream<Uint8Array>, (t) => (err += t));
  try {
    const deadline = Date.now() + 45000;
    while (!out.includes("Press Ctrl-C") && proc.exitCode === null && Date.now() < deadline) await Bun.sleep(50);
    if (!out.includes("Press Ctrl-C")) throw new Error(`the demo did not come up\n--- stdout ---\n${out}\n--- stderr ---\n${err}`);

    const url = /psql (postgresql:\/\/postgres@127\.0\.0\.1:(\d+)\/demo)\n/.exec(out);
    const dashboard = /dashboard: +(http:\/\/127\.0\.0\.1:(\d+)\/)\n/.exec(out);
    const dataDir = /data: +(\S+)/.exec(out)?.[1];
    const nodePorts = [...out.matchAll(/node\d (primary|sync standby|async standby) :(\d+)/g)].map((m) => ({ role: m[1]!, port: Number(m[2]) }));
    expect(url).not.toBeNull();
    expect(dashboard).not.toBeNull();
    expect(existsSync(dataDir!)).toBe(true);
    expect(nodePorts.map((n) => n.role)).toEqual(["primary", "sync standby", "async standby"]);
    const proxyPort = Number(url![2]);
    const adminPort = Number(dashboard![2]);

    const client = new pg.Client({ connectionString: url![1], connectionTimeoutMillis: 10000 });
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
    const page = await fetch(dashboard![1]);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const nodes = (await (await fetch(`${dashboard![1]}nodes`)).json()) as { nodes: { state: string }[] };
    expect(nodes.nodes.map((n) => n.state)).toEqual(["up", "up", "up"]);

    proc.kill("SIGINT");
    const code = await Promise.race([proc.exited, Bun.sleep(30000).then(() => "timeout")]);
    expect(code).toBe(0);
    expect(out).toContain("demo: done");
    expect(existsSync(dataDir!)).toBe(false);
    for (const p of [proxyPort, adminPort, ...nodePorts.map((n) => n.port)]) expect({ port: p, inUse: await portInUse(p) }).toEqual({ port: p, inUse: false });
  } finally {
    // SIGINT first: killing the Node wrapper outright would leave the demo itself running.
    if (proc.exitCode === null) {
      proc.kill("SIGINT");
      await Promise.race([proc.exited, Bun.sleep(15000)]);
    }
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
}, 90000);
