// Admin HTTP API against a real proxy process: every route's shape and values, drain, pause, reload, tokens, errors.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { configText, freePort, psql, startProxy, startProxyWithConfig, writeConfig, type RunningProxy } from "../support/proxy.ts";
import { pgClient } from "../support/clients.ts";

const QUERIES = 5;

async function call(proxy: RunningProxy, method: string, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, { method, headers }).catch((e: Error) => {
    throw new Error(`${method} ${path}: ${e.message}\nproxy output:\n${proxy.output()}`);
  });
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

const client = (port: number, database = "test") => pgClient(port, { database });

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(25);
  }
  return false;
}

function expectJsonError(r: { status: number; headers: Headers; body: any }, status: number, error: string): void {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toContain("application/json");
  expect(r.body.error).toBe(error);
  expect(typeof r.body.message).toBe("string");
}

describe("loopback, no tokens", () => {
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy({ mode: "transaction", toml: `[health]\npassword = "http-secret-pw"\n[query_analytics]\nslow_query_ms = 250\n` });
    for (let i = 0; i < QUERIES; i++) expect((await psql(proxy.port, ["-Atc", `select ${i}`])).code).toBe(0);
  });

  afterAll(async () => {
    await proxy.stop();
  });

  test("GET /health: ok while the primary is up", async () => {
    const r = await call(proxy, "GET", "/health");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: "ok", reasons: [], primary: "node1", paused: false, nodes: { total: 1, up: 1, down: 0, draining: 0 } });
  });

  test("GET /nodes: the node with role, state, lag and pool counts", async () => {
    const r = await call(proxy, "GET", "/nodes");
    expect(r.status).toBe(200);
    expect(r.body.nodes).toHaveLength(1);
    const n = r.body.nodes[0];
    expect(n).toMatchObject({ id: "node1", host: "127.0.0.1", port: 5432, role: "primary", state: "up", lag_bytes: 0, lag_seconds: 0 });
    expect(n.pools.total).toBeGreaterThanOrEqual(1);
    expect(n.pools.idle + n.pools.active + n.pools.connecting).toBe(n.pools.total);
    expect(n.pools.waiting).toBe(0);
    expect((await call(proxy, "GET", "/nodes/node1")).body.id).toBe("node1");
  });

  test("GET /config: core and module keys with defaults, secrets masked", async () => {
    const r = await call(proxy, "GET", "/config");
    expect(r.status).toBe(200);
    const byKey = new Map((r.body.settings as Record<string, unknown>[]).map((x) => [x.key, x]));
    expect(byKey.get("pool.max_connections")).toEqual({ key: "pool.max_connections", value: "10", default: "20", changeable: true });
    expect(byKey.get("health.password")).toMatchObject({ value: "********", default: "" });
    expect(byKey.get("query_analytics.slow_query_ms")).toEqual({ key: "query_analytics.slow_query_ms", value: "250", default: "1000", changeable: false });
    expect(byKey.get("query_analytics.show_limit")).toMatchObject({ value: "20", default: "20" });
    expect(JSON.stringify(r.body)).not.toContain("http-secret-pw");
  });

  test("GET /topology: primary and standbys from the cluster", async () => {
    const r = await call(proxy, "GET", "/topology");
    expect(r.status).toBe(200);
    expect(r.body.primary).toBe("node1");
    expect(r.body.standbys).toEqual([]);
    expect(r.body.nodes.map((n: any) => [n.id, n.role, n.state])).toEqual([["node1", "primary", "up"]]);
  });

  test("GET /pools: counters of the (database, user) the queries used", async () => {
    const r = await call(proxy, "GET", "/pools");
    expect(r.status).toBe(200);
    const p = r.body.pools.find((x: any) => x.database === "test" && x.user === "postgres");
    expect(p).toMatchObject({ node: "node1", mode: "transaction", paused: false, waiting: 0 });
    expect(p.query_count).toBeGreaterThanOrEqual(QUERIES);
    expect(p.xact_count).toBeGreaterThanOrEqual(QUERIES);
    expect(p.bytes_in).toBeGreaterThan(0);
    expect(p.bytes_out).toBeGreaterThan(p.bytes_in);
    for (const k of ["clients", "active", "idle", "connecting", "total", "avg_wait_us", "max_wait_us"]) expect(typeof p[k]).toBe("number");
  });

  test("GET /metrics: Prometheus text with the proxy's series and process metrics", async () => {
    const r = await call(proxy, "GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain");
    const text = r.body as string;
    const value = (series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(series + " "));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    for (const name of [
      "heliosproxy_client_connections",
      "heliosproxy_server_connections",
      "heliosproxy_clients_waiting",
      "heliosproxy_pool_wait_seconds",
      "heliosproxy_queries_total",
      "heliosproxy_bytes_total",
      "heliosproxy_node_up",
      "heliosproxy_replication_lag_bytes",
      "heliosproxy_replication_lag_seconds",
      "heliosproxy_logins_total",
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
    ])
      expect(text).toContain(`# TYPE ${name} `);
    expect(value('heliosproxy_node_up{node="node1"}')).toBe(1);
    expect(value('heliosproxy_replication_lag_bytes{node="node1"}')).toBe(0);
    expect(value('heliosproxy_queries_total{node="node1",database="test"}')).toBeGreaterThanOrEqual(QUERIES);
    expect(value('heliosproxy_logins_total{result="ok"}')).toBeGreaterThanOrEqual(QUERIES);
    // No connection of this run took an impossible state transition.
    expect([value('heliosproxy_state_transition_bugs_total{connection="client"}'), value('heliosproxy_state_transition_bugs_total{connection="server"}')]).toEqual([0, 0]);
    expect(value('heliosproxy_bytes_total{node="node1",database="test",direction="out"}')).toBeGreaterThan(0);
    expect(value('heliosproxy_pool_wait_seconds_count{node="node1",database="test",user="postgres"}')).toBeGreaterThanOrEqual(0);
    expect(value('heliosproxy_server_connections{node="node1",database="test",user="postgres",state="idle"}')).toBeGreaterThanOrEqual(1);
    // Every sample line is `name{labels} number`, never NaN; no event-loop-lag series (nonsense under Bun).
    for (const l of text.split("\n").filter((l) => l && !l.startsWith("#"))) expect(l).toMatch(/^[a-zA-Z_:][\w:]*(\{.*\})? (-?[\d.e+-]+|[+-]Inf)$/);
    expect(text).not.toContain("nodejs_eventloop_lag");
  });

  test("GET /openapi.json: an OpenAPI 3.1 document listing every route", async () => {
    const r = await call(proxy, "GET", "/openapi.json");
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe("3.1.0");
    const paths = r.body.paths;
    for (const [path, method] of [
      ["/health", "get"],
      ["/livez", "get"],
      ["/readyz", "get"],
      ["/nodes", "get"],
      ["/nodes/{id}", "get"],
      ["/topology", "get"],
      ["/pools", "get"],
      ["/config", "get"],
      ["/metrics", "get"],
      ["/nodes/{id}/drain", "post"],
      ["/nodes/{id}/undrain", "post"],
      ["/pause", "post"],
      ["/resume", "post"],
      ["/reload", "post"],
      ["/failover", "post"],
      ["/switchover", "post"],
      ["/failovers", "get"],
      ["/alarms", "get"],
      ["/history", "get"],
      ["/topology/primary", "post"],
      ["/topology/events", "post"],
      ["/", "get"],
    ] as const)
      expect(typeof paths[path]?.[method]?.responses?.["200"]?.description).toBe("string");
  });

  test("drain: in-flight transaction finishes, node reported draining, writes and reads still work; undrain restores", async () => {
    const c = await client(proxy.port);
    try {
      await c.query("BEGIN");
      await c.query("SELECT 1");
      const drained = call(proxy, "POST", "/nodes/node1/drain?wait=5");
      await Bun.sleep(300);
      expect((await call(proxy, "GET", "/nodes/node1")).body.pools.active).toBe(1);
      await c.query("SELECT 2");
      await c.query("COMMIT");
      const r = await drained;
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ node: { id: "node1", state: "draining", drained: true }, in_flight: 0, complete: true });
      expect((await call(proxy, "GET", "/nodes")).body.nodes[0].state).toBe("draining");
      expect((await call(proxy, "GET", "/health")).body).toMatchObject({ status: "ok", nodes: { draining: 1 } });
      // The only node is the primary: writes still go there and reads fall back to it.
      const table = `admin_drain_${process.pid}`;
      await c.query(`BEGIN; CREATE TABLE ${table} (x int); INSERT INTO ${table} VALUES (1); DROP TABLE ${table}; COMMIT`);
      expect((await c.query("SELECT 41 + 1 AS v")).rows[0].v).toBe(42);
      expect((await psql(proxy.port, ["-Atc", "select 'still serving'"])).stdout.trim()).toBe("still serving");
      expect((await call(proxy, "GET", "/metrics")).body).toContain('heliosproxy_node_drained{node="node1"} 1');
    } finally {
      await c.end();
    }
    const u = await call(proxy, "POST", "/nodes/node1/undrain");
    expect(u.status).toBe(200);
    expect(u.body.node).toMatchObject({ id: "node1", state: "up", drained: false });
    expect((await call(proxy, "GET", "/topology")).body.nodes[0].state).toBe("up");
  });

  test("pause holds new queries until resume", async () => {
    const r = await call(proxy, "POST", "/pause");
    expect(r.status).toBe(200);
    expect(r.body.paused).toBe(true);
    expect((await call(proxy, "GET", "/health")).body.paused).toBe(true);
    const c = await client(proxy.port);
    try {
      let done = false;
      const q = c.query("SELECT 'after resume' AS v").then((res) => {
        done = true;
        return res.rows[0].v;
      });
      expect(await waitFor(async () => (await call(proxy, "GET", "/pools")).body.pools.some((p: any) => p.waiting > 0))).toBe(true);
      expect(done).toBe(false);
      expect((await call(proxy, "GET", "/pools")).body.pools.every((p: any) => p.paused)).toBe(true);
      expect((await call(proxy, "GET", "/metrics")).body).toMatch(/^heliosproxy_client_connections\{database="test",user="postgres"\} [1-9]/m);
      await Bun.sleep(100);
      const res = await call(proxy, "POST", "/resume");
      expect(res.body.paused).toBe(false);
      expect(await q).toBe("after resume");
      // The wait is accounted: count, mean and max in /pools, sum and count in /metrics.
      const p = (await call(proxy, "GET", "/pools")).body.pools.find((x: any) => x.database === "test");
      expect(p.wait_count).toBeGreaterThanOrEqual(1);
      expect(p.max_wait_us).toBeGreaterThanOrEqual(100_000);
      expect(p.avg_wait_us).toBeGreaterThan(0);
      const m = (await call(proxy, "GET", "/metrics")).body as string;
      expect(Number(/^heliosproxy_pool_wait_seconds_sum\{node="node1",database="test",user="postgres"\} (\S+)/m.exec(m)?.[1])).toBeGreaterThanOrEqual(0.1);
    } finally {
      await c.end();
    }
  });

  test("pause?wait=N: waits for a transaction in progress, then closes the servers; a pool made while paused starts paused", async () => {
    const c = await client(proxy.port);
    try {
      await c.query("BEGIN");
      await c.query("SELECT 1");
      const early = await call(proxy, "POST", "/pause?wait=0.3");
      expect(early.status).toBe(200);
      expect(early.body).toMatchObject({ paused: true, busy: 1, complete: false });
      expect((await call(proxy, "POST", "/pause?wait=x")).status).toBe(400);
      await c.query("COMMIT");
      const done = await call(proxy, "POST", "/pause?wait=5");
      expect(done.body).toMatchObject({ paused: true, busy: 0, complete: true });
      const pool = (await call(proxy, "GET", "/pools")).body.pools.find((p: any) => p.database === "test");
      expect(pool).toMatchObject({ paused: true, total: 0 });
      // A database with no pool yet: its pool is made paused, so the query waits for /resume.
      const other = await client(proxy.port, "postgres");
      try {
        let answered = false;
        const q = other.query("SELECT 'resumed' AS v").then((r) => {
          answered = true;
          return r.rows[0].v;
        });
        await Bun.sleep(300);
        expect(answered).toBe(false);
        expect((await call(proxy, "GET", "/pools")).body.pools.find((p: any) => p.database === "postgres")).toMatchObject({ paused: true, waiting: 1 });
        expect((await call(proxy, "POST", "/resume")).body.paused).toBe(false);
        expect(await q).toBe("resumed");
      } finally {
        await other.end();
      }
    } finally {
      await call(proxy, "POST", "/resume");
      await c.end();
    }
  });

  test("reload: 200 on a valid file, 400 with file and line on a broken one", async () => {
    const good = readFileSync(proxy.configPath, "utf8");
    const ok = await call(proxy, "POST", "/reload");
    expect(ok.status).toBe(200);
    expect(ok.body.status).toBe("reloaded");
    writeFileSync(proxy.configPath, good + '\n[pool]\nmode = "sesion"\n');
    try {
      const bad = await call(proxy, "POST", "/reload");
      expectJsonError(bad, 400, "invalid_config");
      expect(bad.body.message).toMatch(/proxy\.toml:\d+/);
    } finally {
      writeFileSync(proxy.configPath, good);
    }
    expect((await psql(proxy.port, ["-Atc", "select 8"])).stdout.trim()).toBe("8");
  });

  test("errors are JSON: 404 unknown route or node, 405 wrong method, 400 bad input", async () => {
    expectJsonError(await call(proxy, "GET", "/nope"), 404, "not_found");
    expectJsonError(await call(proxy, "GET", "/nodes/ghost"), 404, "not_found");
    expectJsonError(await call(proxy, "POST", "/nodes/ghost/drain"), 404, "not_found");
    expectJsonError(await call(proxy, "POST", "/nodes/ghost/undrain"), 404, "not_found");
    const m = await call(proxy, "GET", "/pause");
    expectJsonError(m, 405, "method_not_allowed");
    expect(m.headers.get("allow")).toBe("POST");
    expectJsonError(await call(proxy, "DELETE", "/nodes"), 405, "method_not_allowed");
    expectJsonError(await call(proxy, "POST", "/nodes/node1/drain?wait=soon"), 400, "bad_request");
    expectJsonError(await call(proxy, "POST", "/nodes/node1/drain?wait=9999"), 400, "bad_request");
    expectJsonError(await call(proxy, "GET", "/nodes/%E0%A4%A"), 400, "bad_request");
    // Nothing above changed state, and the server is still answering.
    expect((await call(proxy, "GET", "/nodes/node1")).body.state).toBe("up");
  });

  test("a cross-origin POST or a foreign Host header is refused", async () => {
    expectJsonError(await call(proxy, "POST", "/pause", { origin: "http://evil.example" }), 403, "forbidden");
    expect((await call(proxy, "GET", "/health")).body.paused).toBe(false);
    expectJsonError(await call(proxy, "GET", "/nodes", { host: "evil.example" }), 403, "forbidden");
    expect((await call(proxy, "GET", "/nodes", { host: "localhost:1234" })).status).toBe(200);
  });

  test("/health answers 503 while the proxy shuts down", async () => {
    const c = await client(proxy.port);
    await c.query("BEGIN");
    proxy.proc.kill("SIGTERM");
    const seen = await waitFor(async () => (await call(proxy, "GET", "/health")).status === 503);
    expect(seen).toBe(true);
    const r = await call(proxy, "GET", "/health");
    expect(r.body.status).toBe("unavailable");
    expect(r.body.reasons).toContain("proxy is shutting down");
    await c.query("COMMIT").catch(() => {});
    await c.end().catch(() => {});
    expect(await proxy.proc.exited).toBe(0);
  });
});

describe("tokens", () => {
  const ADMIN = "adm-7f3c9e1b";
  const READ = "read-55d2a0c4";
  let proxy: RunningProxy;

  beforeAll(async () => {
    proxy = await startProxy({ env: { HELIOSPROXY_ADMIN_TOKEN: ADMIN, HELIOSPROXY_READ_TOKEN: READ } });
  });

  afterAll(async () => {
    await proxy.stop();
  });

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  test("set on loopback, they are checked: 401 without or with a wrong token", async () => {
    const r = await call(proxy, "GET", "/nodes");
    expectJsonError(r, 401, "unauthorized");
    expect(r.headers.get("www-authenticate")).toContain("Bearer");
    expectJsonError(await call(proxy, "GET", "/metrics", bearer("wrong")), 401, "unauthorized");
    expectJsonError(await call(proxy, "POST", "/pause", bearer(ADMIN + "x")), 401, "unauthorized");
    expectJsonError(await call(proxy, "GET", "/health", { authorization: `Basic ${btoa("a:" + ADMIN)}` }), 401, "unauthorized");
  });

  test("the read token reads but cannot change anything", async () => {
    for (const path of ["/health", "/nodes", "/topology", "/pools", "/metrics"]) expect((await call(proxy, "GET", path, bearer(READ))).status).toBe(200);
    expectJsonError(await call(proxy, "POST", "/pause", bearer(READ)), 403, "forbidden");
    expectJsonError(await call(proxy, "POST", "/nodes/node1/drain", bearer(READ)), 403, "forbidden");
    expect((await call(proxy, "GET", "/nodes", bearer(READ))).body.nodes[0].state).toBe("up");
  });

  test("the admin token does everything", async () => {
    expect((await call(proxy, "GET", "/nodes", bearer(ADMIN))).status).toBe(200);
    const d = await call(proxy, "POST", "/nodes/node1/drain", bearer(ADMIN));
    expect(d.status).toBe(200);
    expect(d.body.node.state).toBe("draining");
    expect((await call(proxy, "POST", "/nodes/node1/undrain", bearer(ADMIN))).body.node.state).toBe("up");
  });

  test("the dashboard page and the API description need no token (no proxy state in them)", async () => {
    expect((await call(proxy, "GET", "/")).status).toBe(200);
    expect((await call(proxy, "GET", "/openapi.json")).body.openapi).toBe("3.1.0");
  });
});

describe("beyond loopback", () => {
  test("without tokens every data route is refused, and the log says why", async () => {
    const port = freePort();
    const admin = freePort();
    const text = configText(port, admin).replace(`admin_address = "127.0.0.1:${admin}"`, `admin_address = "0.0.0.0:${admin}"`);
    await using proxy = await startProxyWithConfig(writeConfig(text), port, admin);
    const r = await call(proxy, "GET", "/health");
    expectJsonError(r, 401, "unauthorized");
    expect(r.body.message).toContain("HELIOSPROXY_ADMIN_TOKEN");
    expectJsonError(await call(proxy, "POST", "/pause"), 401, "unauthorized");
    expect(proxy.output()).toContain("beyond loopback");
  });

  test("with an admin token only, it is required and sufficient", async () => {
    const port = freePort();
    const admin = freePort();
    const text = configText(port, admin).replace(`admin_address = "127.0.0.1:${admin}"`, `admin_address = "0.0.0.0:${admin}"`);
    await using proxy = await startProxyWithConfig(writeConfig(text), port, admin, { HELIOSPROXY_ADMIN_TOKEN: "only-admin-token" });
    expectJsonError(await call(proxy, "GET", "/pools"), 401, "unauthorized");
    expect((await call(proxy, "GET", "/pools", { authorization: "Bearer only-admin-token" })).status).toBe(200);
  });
});

describe("primary down", () => {
  test("/health is 503 with the reason; /nodes and /metrics say down", async () => {
    await using proxy = await startProxy({
      nodes: [{ host: "127.0.0.1", port: freePort(), role: "primary" }],
      toml: "[health]\ncheck_interval_secs = 0.1\ncheck_timeout_secs = 0.5\nfailure_threshold = 1",
    });
    expect(await waitFor(async () => (await call(proxy, "GET", "/health")).status === 503)).toBe(true);
    const r = await call(proxy, "GET", "/health");
    expect(r.body.status).toBe("unavailable");
    expect(r.body.reasons.some((x: string) => x.startsWith("primary node1 is down"))).toBe(true);
    expect((await call(proxy, "GET", "/nodes")).body.nodes[0].state).toBe("down");
    expect((await call(proxy, "GET", "/metrics")).body).toContain('heliosproxy_node_up{node="node1"} 0');
  });
});
