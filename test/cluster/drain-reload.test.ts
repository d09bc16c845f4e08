// Drain under read load (0 client errors, in-flight transaction finishes), RELIABILITY B16 reloads and C12 login counting, on a real cluster.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import pg from "pg";
import type { RunningProxy } from "../support/proxy.ts";
import { adminApi, clusterProxyConfig, QueryLoop, startClusterProxy, usePgCluster, waitNodeState, type ClusterProxyOptions } from "../support/pg-cluster.ts";

const DB = "app";
const OPTIONS: ClusterProxyOptions = { strategy: "round_robin", maxConnections: 10 };

const cluster = usePgCluster({ databases: [DB] });
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startClusterProxy(cluster(), OPTIONS);
});

afterAll(async () => {
  await proxy?.stop();
});

async function client(database = DB): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database, connectionTimeoutMillis: 10000, query_timeout: 10000 });
  c.on("error", () => {});
  await c.connect();
  return c;
}

const port = async (c: pg.Client, sql = "SELECT inet_server_port() AS p"): Promise<number> => (await c.query(sql)).rows[0].p;

/** Backend pids of the proxy's server connections to `node` in the test database. */
async function serverPids(node: string): Promise<number[]> {
  const out = await cluster().psql(node, `SELECT pid FROM pg_stat_activity WHERE datname = '${DB}' AND backend_type = 'client backend' AND client_addr IS NOT NULL ORDER BY pid`);
  return out.split("\n").filter(Boolean).map(Number);
}

test("drain under read load: 0 client errors, the in-flight transaction finishes on the node, it leaves rotation; undrain brings it back", async () => {
  const c = cluster();
  const target = c.standbys()[1]!;
  const other = c.standbys()[0]!;
  const loop = new QueryLoop(proxy.port, { clients: 4, database: DB });
  const tx = await client();
  try {
    await loop.waitFor(target.port);
    await loop.waitFor(other.port);
    // A read-only transaction that landed on the node to drain.
    for (let i = 0; i < 20; i++) {
      await tx.query("BEGIN READ ONLY");
      if ((await port(tx)) === target.port) break;
      await tx.query("COMMIT");
    }
    expect(await port(tx)).toBe(target.port);

    const drain = adminApi(proxy, "POST", `/nodes/${target.name}/drain?wait=3`);
    await waitNodeState(proxy, target.name, "draining", 2000);
    // In flight: the transaction goes on on its server while new reads go elsewhere.
    await Bun.sleep(300);
    expect(await port(tx, "SELECT inet_server_port() AS p FROM pg_class LIMIT 1")).toBe(target.port);
    expect((await adminApi(proxy, "GET", `/nodes/${target.name}`)).body.pools.active).toBeGreaterThanOrEqual(1);
    const settled = performance.now();
    await Bun.sleep(500);
    const during = loop.portsSince(settled);
    expect(during.get(target.port)).toBeUndefined();
    expect(during.get(c.primary().port)).toBeUndefined();
    expect(during.get(other.port) ?? 0).toBeGreaterThan(20);
    await tx.query("COMMIT");
    const r = await drain;
    expect(r.status).toBe(200);
    expect(r.body.node).toMatchObject({ id: target.name, state: "draining", drained: true });
    // Its server went with the transaction: nothing of the node is leased any more.
    expect((await adminApi(proxy, "GET", `/nodes/${target.name}`)).body.pools.active).toBe(0);
    expect((await adminApi(proxy, "GET", "/health")).body).toMatchObject({ status: "ok", nodes: { draining: 1 } });
  } finally {
    await tx.end().catch(() => {});
    const u = await adminApi(proxy, "POST", `/nodes/${target.name}/undrain`);
    expect(u.body.node).toMatchObject({ id: target.name, state: "up", drained: false });
  }
  try {
    await loop.waitFor(target.port);
  } finally {
    await loop.stop();
  }
  expect(loop.errors).toEqual([]);
  expect(loop.reads.length).toBeGreaterThan(200);
});

/** A TCP forwarder to `targetPort`: the same server reached through another port. */
function forwarder(targetPort: number): Promise<{ port: number; connections: () => number; server: Server }> {
  let n = 0;
  const server = createServer((down) => {
    n++;
    const up = connect(targetPort, "127.0.0.1");
    down.pipe(up).pipe(down);
    const close = () => {
      down.destroy();
      up.destroy();
    };
    down.on("error", close).on("close", close);
    up.on("error", close).on("close", close);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as { port: number }).port, connections: () => n, server })));
}

test("B16: a reload that changes nothing keeps every server connection; moving one node's port recycles only that node's", async () => {
  const c = cluster();
  const [primary, s1, s2] = [c.nodes[0]!, c.nodes[1]!, c.nodes[2]!];
  // Warm the pools of all three nodes with a few concurrent clients.
  const clients = await Promise.all(Array.from({ length: 4 }, () => client()));
  await Promise.all(clients.map(async (cl) => {
    for (let i = 0; i < 6; i++) await cl.query("SELECT inet_server_port(), pg_sleep(0.01)");
    await cl.query("BEGIN; SELECT 1; COMMIT");
  }));
  const before = { primary: await serverPids(primary.name), s1: await serverPids(s1.name), s2: await serverPids(s2.name) };
  for (const pids of Object.values(before)) expect(pids.length).toBeGreaterThan(0);

  expect((await adminApi(proxy, "POST", "/reload")).status).toBe(200);
  for (const cl of clients) {
    await cl.query("SELECT inet_server_port()");
    await cl.query("BEGIN; SELECT 1; COMMIT");
  }
  expect({ primary: await serverPids(primary.name), s1: await serverPids(s1.name), s2: await serverPids(s2.name) }).toEqual(before);

  // The same server behind another port: only that node's servers are replaced.
  const fwd = await forwarder(s2.port);
  try {
    writeFileSync(proxy.configPath, clusterProxyConfig(c, proxy.port, proxy.adminPort, { ...OPTIONS, ports: { [s2.name]: fwd.port } }));
    expect((await adminApi(proxy, "POST", "/reload")).status).toBe(200);
    const seen = new Set<number>();
    for (let i = 0; i < 12; i++) for (const cl of clients) seen.add(await port(cl));
    expect([...seen].sort()).toEqual([s1.port, s2.port].sort());
    expect(fwd.connections()).toBeGreaterThan(0);
    const after = { primary: await serverPids(primary.name), s1: await serverPids(s1.name), s2: await serverPids(s2.name) };
    expect(after.primary).toEqual(before.primary);
    expect(after.s1).toEqual(before.s1);
    expect(after.s2.filter((pid) => before.s2.includes(pid))).toEqual([]);
    expect(after.s2.length).toBeGreaterThan(0);
  } finally {
    await Promise.all(clients.map((cl) => cl.end()));
    writeFileSync(proxy.configPath, clusterProxyConfig(c, proxy.port, proxy.adminPort, OPTIONS));
    await adminApi(proxy, "POST", "/reload");
    fwd.server.close();
  }
});

/** heliosproxy_logins_total{result="..."} from /metrics. */
async function logins(result: string): Promise<number> {
  const text = (await adminApi(proxy, "GET", "/metrics")).body as string;
  const m = new RegExp(`^heliosproxy_logins_total\\{result="${result}"\\} (\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

test("C12: failed logins are not counted as sessions; counts return to zero when clients leave", async () => {
  const okBefore = await logins("ok");
  const failedBefore = await logins("failed");
  const held = await Promise.all(Array.from({ length: 3 }, () => client()));
  const attempts = [
    ...Array.from({ length: 4 }, () => ({ user: "postgres", database: "no_such_db" })),
    ...Array.from({ length: 3 }, () => ({ user: "no_such_role", database: DB })),
  ];
  const failures = await Promise.all(
    attempts.map(async (a) => {
      const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, ...a, connectionTimeoutMillis: 10000 });
      c.on("error", () => {});
      try {
        await c.connect();
        await c.end();
        return "connected";
      } catch (e) {
        return (e as Error & { code?: string }).code;
      }
    }),
  );
  // A missing database is named after authentication (3D000, as PostgreSQL); an unknown role reads as a wrong password.
  expect(failures).toEqual(attempts.map((a) => (a.database === "no_such_db" ? "3D000" : "28P01")));
  try {
    const health = (await adminApi(proxy, "GET", "/health")).body;
    expect(health.clients).toBe(3);
    const pools = (await adminApi(proxy, "GET", "/pools")).body.pools as { database: string; user: string; clients: number }[];
    expect(pools.reduce((n, p) => n + p.clients, 0)).toBe(3);
    expect(pools.filter((p) => p.clients > 0).map((p) => [p.database, p.user])).toEqual([[DB, "postgres"]]);
    expect(await logins("ok")).toBe(okBefore + 3);
    expect(await logins("failed")).toBe(failedBefore + attempts.length);
  } finally {
    await Promise.all(held.map((c) => c.end()));
  }
  const deadline = Date.now() + 3000;
  while ((await adminApi(proxy, "GET", "/health")).body.clients !== 0 && Date.now() < deadline) await Bun.sleep(20);
  expect((await adminApi(proxy, "GET", "/health")).body.clients).toBe(0);
  const pools = (await adminApi(proxy, "GET", "/pools")).body.pools as { clients: number }[];
  expect(pools.reduce((n, p) => n + p.clients, 0)).toBe(0);
});
