// POST /failover against a lone healthy primary: refused before anything is done to it (no fence, no read-only, no session ended), with and without force.

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
