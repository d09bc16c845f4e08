// A lone primary: POST /failover refused before anything is done to it (no fence, no read-only, no session ended), with and without force; a commit stuck on synchronous replication ends within sync_wait_timeout_secs with 08007, alarmed and counted.

import { expect, test } from "bun:test";
import pg from "pg";
import { adminApi, startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ standbys: [], databases: ["app"] });

test("POST /failover on a single healthy primary: 409, then with force 409 (no standby): read-only stays off, no backend ended", async () => {
  const c = cluster();
  const p = await startClusterProxy(c, { split: false, toml: '[failover]\npolicy = "manual"\n' });
  try {
    const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app" });
    cl.on("error", () => {});
    await cl.connect();
    const pid = (await cl.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    const plain = await adminApi(p, "POST", "/failover", {}, {});
    expect(plain.status).toBe(409);
    expect(plain.body.message).toContain("is up and answering");
    const forced = await adminApi(p, "POST", "/failover", {}, { force: true });
    expect(forced.status).toBe(409);
    expect(forced.body.message).toBe("no safe candidate (no standbys)");
    expect(forced.body.record.fence).toBe("not attempted");
    expect(await c.psql("node1", "SHOW default_transaction_read_only")).toBe("off");
    expect(await c.psql("node1", "SELECT setting FROM pg_file_settings WHERE name = 'default_transaction_read_only'")).toBe("");
    // The session's backend lives on and still writes.
    expect((await cl.query("SELECT pg_backend_pid() AS pid")).rows[0].pid).toBe(pid);
    await cl.query("CREATE TABLE guard_t (v int)");
    expect((await cl.query("INSERT INTO guard_t VALUES (1)")).rowCount).toBe(1);
    const bad = await adminApi(p, "POST", "/failover", {}, { force: "yes" });
    expect(bad.status).toBe(400);
    await cl.end();
  } finally {
    await p.stop();
  }
}, 60_000);

test("a commit waiting for a standby that is not there: alarm while it waits, FATAL 08007 after sync_wait_timeout_secs, counted; never cancelled (the row shows once the setting is fixed)", async () => {
  const c = cluster();
  const p = await startClusterProxy(c, { split: false, toml: '[failover]\npolicy = "manual"\nsync_wait_timeout_secs = 1.5\n' });
  try {
    await c.psql("node1", "CREATE TABLE IF NOT EXISTS stuck_t (v int)", { db: "app" });
    await c.psql("node1", "ALTER SYSTEM SET synchronous_standby_names = 'ghost'");
    await c.psql("node1", "SELECT pg_reload_conf()");
    const cl = new pg.Client({ host: "127.0.0.1", port: p.port, user: "postgres", database: "app" });
    cl.on("error", () => {});
    await cl.connect();
    const t0 = performance.now();
    const stuck = cl.query("INSERT INTO stuck_t VALUES (7)").then(
      () => "answered",
      (e: Error & { code?: string }) => e.code ?? e.message,
    );
    // While it waits: the alarm names the setting.
    let alarm: string | null = null;
    for (let i = 0; i < 50 && alarm === null; i++) {
      alarm = (await adminApi(p, "GET", "/health")).body.synchronous_replication.alarm;
      if (alarm === null) await Bun.sleep(50);
    }
    expect(alarm).toContain("1 commit on the primary node1 wait for synchronous replication (synchronous_standby_names = 'ghost'");
    expect((await adminApi(p, "GET", "/metrics")).body).toContain("heliosproxy_sync_wait_alarm 1");
    expect(await stuck).toBe("08007");
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThan(1400);
    expect(waited).toBeLessThan(6000);
    expect((await adminApi(p, "GET", "/metrics")).body).toContain("heliosproxy_sync_waits_ended_total 1");
    // The backend was not cancelled: it still waits, and the commit lands once the operator fixes the setting.
    expect(await c.psql("node1", "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")).toBe("1");
    expect(await c.psql("node1", "SELECT count(*) FROM stuck_t", { db: "app" })).toBe("0");
    await c.psql("node1", "ALTER SYSTEM RESET synchronous_standby_names");
    await c.psql("node1", "SELECT pg_reload_conf()");
    let rows = "0";
    for (let i = 0; i < 100 && rows === "0"; i++) {
      rows = await c.psql("node1", "SELECT count(*) FROM stuck_t", { db: "app" });
      if (rows === "0") await Bun.sleep(50);
    }
    expect(rows).toBe("1");
  } finally {
    await c.psql("node1", "ALTER SYSTEM RESET synchronous_standby_names").catch(() => "");
    await c.psql("node1", "SELECT pg_reload_conf()").catch(() => "");
    await p.stop();
  }
}, 60_000);
