// A database just created on the primary and not yet replayed on a standby: reads of logged-in clients still work, never an auth error.

import { afterAll, beforeAll, expect, test } from "bun:test";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { startClusterProxy, usePgCluster } from "../support/pg-cluster.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy;

beforeAll(async () => {
  const c = cluster();
  // node3 applies WAL 5 s late: what the primary creates now is not there yet.
  c.dev.node("node3").setConf({ recovery_min_apply_delay: "'5s'" });
  await c.dev.node("node3").reload();
  proxy = await startClusterProxy(c, { strategy: "round_robin" });
});

afterAll(async () => {
  await proxy?.stop();
});

test("reads in a database the lagging standby does not have yet are served elsewhere, not failed as 28P01", async () => {
  const c = cluster();
  await Bun.sleep(300);
  await c.psql(c.primary(), "CREATE DATABASE fresh");
  // The sync standby replays it at once; node3 will not for 5 s.
  for (let i = 0; i < 100 && (await c.psql("node2", "SELECT count(*) FROM pg_database WHERE datname = 'fresh'")) !== "1"; i++) await Bun.sleep(20);
  expect(await c.psql("node3", "SELECT count(*) FROM pg_database WHERE datname = 'fresh'")).toBe("0");
  const results: string[] = [];
  for (let i = 0; i < 4; i++) {
    const cl = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "fresh", query_timeout: 10000 });
    cl.on("error", () => {});
    try {
      await cl.connect();
      const p = (await cl.query("SELECT inet_server_port() AS p")).rows[0].p as number;
      results.push(p === c.node("node3").port ? "node3" : "ok");
    } catch (e) {
      results.push(`${(e as Error & { code?: string }).code}: ${(e as Error).message}`);
    } finally {
      await cl.end().catch(() => {});
    }
  }
  expect(results).toEqual(["ok", "ok", "ok", "ok"]);
});
