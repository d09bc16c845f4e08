// Failover policies on one cluster: a 1 s blip triggers nothing; "off" never promotes; "manual" holds requests and raises an alarm until POST /failover.

import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import pg from "pg";
import { pgCommand, shQuote } from "../../src/devcluster/pg-bin.ts";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy | null = null;

afterEach(async () => {
  await proxy?.stop();
  proxy = null;
});

async function start(policy: string, extra = ""): Promise<RunningProxy> {
  proxy = await startClusterProxy(cluster(), {
    split: false,
    pool: "wait_timeout_secs = 2",
    health: { interval: 1, timeout: 1, failureThreshold: 3 },
    toml: `[failover]\npolicy = "${policy}"\n${extra}`,
  });
  return proxy;
}

async function connect(p: RunningProxy): Promise<pg.Client> {
  const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app", query_timeout: 30000 });
  cl.on("error", () => {});
  await cl.connect();
  return cl;
}

const port = async (cl: pg.Client) => (await cl.query("SELECT inet_server_port() AS p")).rows[0].p as number;

test("a 1 s freeze of the primary under policy auto: no failover, queries resume on the same primary", async () => {
  const p = await start("auto");
  const cl = await connect(p);
  await Bun.sleep(1200);
  await cluster().dev.node("node1").freeze(1000);
  await Bun.sleep(3000);
  expect(await port(cl)).toBe(cluster().node("node1").port);
  const f = await adminApi(p, "GET", "/failovers");
  expect(f.body).toMatchObject({ epoch: 0, primary: "node1", failovers: [], alarm: null, in_progress: null });
  await cl.end();
}, 30_000);

test("policy off: the primary down is not promoted over, POST /failover is refused, the primary's return is enough", async () => {
  const c = cluster();
  const p = await start("off");
  const cl = await connect(p);
  expect(await port(cl)).toBe(c.node("node1").port);
  await c.stopNode("node1", "immediate");
  await waitNodeState(p, "node1", "down", 10_000);
  const refused = await adminApi(p, "POST", "/failover", {}, {});
  expect(refused.status).toBe(409);
  expect(refused.body.message).toBe("failover.policy = off: the proxy does not promote standbys");
  // No hold: the write fails after wait_timeout with the connection error, as without failover.
  const err = await cl.query("SELECT 1").catch((e: Error & { code?: string }) => e.code);
  expect(err).toBe("08006");
  expect((await adminApi(p, "GET", "/failovers")).body).toMatchObject({ epoch: 0, failovers: [], buffer: { holding: false } });
  await c.startNode("node1");
  await waitNodeState(p, "node1", "up", 10_000);
  const again = await connect(p);
  expect(await port(again)).toBe(c.node("node1").port);
  await again.end();
}, 60_000);

test("POST /failover on a healthy primary: 409 without force, nothing changed; forced, a promote_command that fails leaves the old primary unfenced and held requests go on there", async () => {
  const c = cluster();
  const p = await start("manual", 'promote_command = "sleep 1; exit 1"\nbuffer_timeout_secs = 10\n');
  const cl = await connect(p);
  const pidBefore = (await cl.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
  await waitNodeState(p, "node2", "up", 10_000);
  const refused = await adminApi(p, "POST", "/failover", {}, {});
  expect(refused.status).toBe(409);
  expect(refused.body.message).toContain("POST /switchover");
  expect(refused.body.message).toContain('{"force": true}');
  expect(await c.psql("node1", "SHOW default_transaction_read_only")).toBe("off");
  expect(await c.psql("node1", `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pidBefore}`)).toBe("1");
  expect((await adminApi(p, "GET", "/failovers")).body).toMatchObject({ epoch: 0, failovers: [], buffer: { holding: false } });

  const forced = adminApi(p, "POST", "/failover", {}, { force: true });
  // A request arriving while the promotion runs is held, then goes on to the old primary once it is unfenced.
  await Bun.sleep(300);
  const other = await connect(p);
  const t0 = performance.now();
  const held = other.query("SELECT inet_server_port() AS p, current_setting('default_transaction_read_only') AS ro");
  const r = await forced;
  expect(r.status).toBe(500);
  // The standby the controller ranked first: most WAL, the sync one on a tie. The primary is up and
  // writing, so the async standby may have more WAL than the sync one when the two are probed.
  const rec = r.body.record;
  const chosen: string = rec.to;
  const runnerUp = chosen === "node2" ? "node3" : "node2";
  expect(rec).toMatchObject({ result: "failed", from: "node1" });
  expect(rec.candidates.map((x: { name: string; eligible: boolean }) => [x.name, x.eligible])).toEqual([[chosen, true], [runnerUp, true]]);
  const [best, next] = rec.candidates as { position: number; sync: boolean }[];
  expect(best!.position > next!.position || (best!.position === next!.position && best!.sync)).toBe(true);
  expect(r.body.record.fence).toContain("soft fence: read-only, client backends ended; soft fence undone");
  const steps = r.body.record.steps.map((x: { step: string }) => x.step) as string[];
  expect(steps.findIndex((x) => x.includes("answers as a standby"))).toBeLessThan(steps.findIndex((x) => x.startsWith("old primary: soft fence")));
  expect((await held).rows[0]).toEqual({ p: c.node("node1").port, ro: "off" });
  expect(performance.now() - t0).toBeLessThan(10_000);
  expect(await c.psql("node1", "SHOW default_transaction_read_only")).toBe("off");
  expect(await c.psql("node1", "SELECT pg_is_in_recovery()")).toBe("f");
  expect(await c.psql(chosen, "SELECT pg_is_in_recovery()")).toBe("t");
  await other.end();
  await cl.end().catch(() => {});
}, 60_000);

test("policy manual: requests wait while the alarm is up; POST /failover promotes (through promote_command) and they run on the new primary", async () => {
  const c = cluster();
  await c.waitStreaming();
  // Operator hooks: promotion by pg_ctl instead of pg_promote(), and a fence command that leaves a mark.
  const promote = `${pgCommand("pg_ctl", ["promote", "-w", "-D", `${c.baseDir}/%n/data`]).map(shQuote).join(" ")} && touch ${c.baseDir}/promoted-%n-%p`;
  const hooks = `promote_command = ${JSON.stringify(promote)}\nfence_command = ${JSON.stringify(`touch ${c.baseDir}/fenced-%n`)}\n`;
  const p = await start("manual", `buffer_timeout_secs = 30\n${hooks}`);
  const cl = await connect(p);
  expect(await port(cl)).toBe(c.node("node1").port);
  await Bun.sleep(1200);
  await c.kill9("node1");
  await waitNodeState(p, "node1", "down", 10_000);
  const f = await adminApi(p, "GET", "/failovers");
  expect(f.body.alarm).toStartWith("primary node1 is down (");
  expect(f.body.alarm).toEndWith("failover.policy = manual: POST /failover to promote a standby");
  expect(f.body.buffer).toMatchObject({ holding: true, reason: "primary node1 down" });
  const held = cl.query("INSERT INTO t_manual SELECT 1 RETURNING inet_server_port() AS p").catch((e: Error) => e.message);
  const pending = cl.query("SELECT inet_server_port() AS p");
  await Bun.sleep(500);
  expect((await adminApi(p, "GET", "/failovers")).body.buffer.held).toBe(1);
  const r = await adminApi(p, "POST", "/failover", {}, { target: "node3" });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ kind: "failover", trigger: "api", from: "node1", to: "node3", result: "done", epoch: 1 });
  // The first statement fails on its own merits (no such table) on the new primary; the second runs there.
  expect(await held).toBe('relation "t_manual" does not exist');
  expect((await pending).rows[0].p).toBe(c.node("node3").port);
  expect((await adminApi(p, "GET", "/failovers")).body).toMatchObject({ alarm: null, primary: "node3", buffer: { holding: false, held: 0 } });
  expect(existsSync(`${c.baseDir}/promoted-node3-${c.node("node3").port}`)).toBe(true);
  expect(existsSync(`${c.baseDir}/fenced-node1`)).toBe(true);
  expect(r.body.fence).toStartWith("fence_command ran; unreachable (");
  expect(r.body.steps.map((x: { step: string }) => x.step)).toContain("promote_command finished");
  await cl.end();
}, 60_000);

test("a request left running on an old primary whose postmaster died is cut after buffer_timeout_secs (08006), counted", async () => {
  const c = cluster();
  const p = await start("auto", "buffer_timeout_secs = 2\n");
  // Whichever node is primary now (the tests above may have moved it), as the probes find it, with a standby up.
  let primary = "";
  for (let i = 0; i < 100; i++) {
    const t = (await adminApi(p, "GET", "/topology")).body as { primary: string; nodes: { id: string; role: string; state: string; fenced: boolean; timeline: number | null }[] };
    const standbys = t.nodes.filter((n) => n.role === "standby" && n.state === "up" && !n.fenced && n.timeline !== null);
    // Probed (a timeline), not only named primary by the config.
    if (t.nodes.some((n) => n.id === t.primary && n.state === "up" && n.timeline !== null) && standbys.length > 0) {
      primary = t.primary;
      break;
    }
    await Bun.sleep(100);
  }
  expect(primary).not.toBe("");
  const cl = await connect(p);
  expect(await port(cl)).toBe(c.node(primary).port);
  const backend = (await cl.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
  // CPU only, no wait: the backend does not notice its postmaster is gone.
  const t0 = performance.now();
  const long = cl.query("SELECT count(*) FROM generate_series(1, 20000000000)").then(
    () => "answered",
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  await Bun.sleep(300);
  process.kill(c.dev.node(primary).pid()!, "SIGKILL");
  try {
    const got = await long;
    if (got !== "08006") console.log(p.output().slice(-3000));
    expect(got).toBe("08006");
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect((await adminApi(p, "GET", "/failovers")).body.primary).not.toBe(primary);
    expect((await adminApi(p, "GET", "/metrics")).body).toContain("heliosproxy_failover_requests_cut_total 1");
    expect(p.output()).toContain("a request on the fenced old primary did not finish");
  } finally {
    try {
      process.kill(backend, "SIGKILL");
    } catch {
      // already gone
    }
    await cl.end().catch(() => {});
  }
}, 60_000);
