// Refused logins cost nothing: no pool, no metric series, no backend login; idle pool groups are reclaimed; SQLSTATE series bounded.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as W from "../support/wire.ts";
import { usePgInstance } from "../support/pg-fixture.ts";
import { waitFor } from "../support/pg-instance.ts";
import { psql, type RunningProxy } from "../support/proxy.ts";

const fx = usePgInstance({ conf: { log_connections: "on" } }, (inst) => inst.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw'"));

const USERS = `[auth]\nadmin_users = ["app"]\n[[users]]\nname = "app"\npassword = "app-pw"\n`;

const get = async (p: RunningProxy, path: string): Promise<string> => await (await fetch(`http://127.0.0.1:${p.adminPort}${path}`)).text();

/** Every metric series (name and labels), without values. */
async function series(p: RunningProxy): Promise<string[]> {
  const text = await get(p, "/metrics");
  return text
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.slice(0, l.lastIndexOf(" ")))
    .sort();
}

const showPools = async (p: RunningProxy): Promise<string> =>
  (await psql(p.port, ["-A", "-c", "SHOW POOLS"], { db: "heliosproxy", user: "app", env: { PGPASSWORD: "app-pw" } })).stdout;

/** SHOW POOLS rows without the counters that move with the console's own login. */
const poolRows = (out: string): string[] => out.split("\n").filter((l) => l.includes("|")).map((l) => l.split("|").slice(0, 2).join("|"));

const randomName = () => `x${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;

test("1,000 refused logins with random names: /pools, SHOW POOLS and metric series unchanged, no backend login", async () => {
  const proxy = await fx.proxyWith({ minConnections: 2, toml: USERS });
  // A real login first, so there is a pool (with its min_connections servers) to compare against.
  expect(await W.loginOutcome(proxy.port, { user: "app", database: "postgres" }, "app-pw")).toBe("ok");
  const pools = async () => JSON.stringify(JSON.parse(await get(proxy, "/pools")).pools);
  // min_connections reached: the pool is settled.
  await waitFor("min_connections servers", async () => (JSON.parse(await get(proxy, "/pools")).pools[0]?.idle ?? 0) === 2);
  const poolsBefore = await pools();
  const showBefore = poolRows(await showPools(proxy));
  const seriesBefore = await series(proxy);
  const names: string[] = [];
  for (let batch = 0; batch < 50; batch++) {
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const database = randomName();
        // Half unknown users, half the real user with a wrong password; every database is made up.
        const user = i % 2 === 0 ? randomName() : "app";
        names.push(database);
        if (user !== "app") names.push(user);
        return W.loginOutcome(proxy.port, { user, database }, "not-the-password");
      }),
    );
    expect(outcomes).toEqual(Array(20).fill("28P01"));
  }
  expect(await pools()).toBe(poolsBefore);
  expect(poolRows(await showPools(proxy))).toEqual(showBefore);
  expect(await series(proxy)).toEqual(seriesBefore);
  // PostgreSQL saw no login for any of the names (log_connections logs every attempt).
  const pgLog = readFileSync(fx.inst.logFile, "utf8");
  expect(pgLog).toContain("connection authorized: user=app");
  for (const n of names) expect(pgLog.includes(n)).toBe(false);
}, 60000);

test("a pool group with no client and no server for idle_timeout_secs is reclaimed; counters keep counting", async () => {
  const proxy = await fx.proxyWith({ poolExtra: "idle_timeout_secs = 1", toml: USERS });
  const c = await W.login(proxy.port, { user: "app", database: "postgres" }, { password: "app-pw" });
  for (let i = 0; i < 5; i++) await c.conn.query("select 1");
  c.conn.quit();
  const queriesTotal = async () => Number(/^heliosproxy_queries_total\{[^}]*database="postgres"[^}]*\} (\d+)/m.exec(await get(proxy, "/metrics"))?.[1] ?? "0");
  const before = await queriesTotal();
  expect(before).toBeGreaterThanOrEqual(5);
  expect(await series(proxy)).toContainEqual(expect.stringContaining('database="postgres",user="app"'));
  // Server idle-closed after 1 s, the empty group dropped 1 s later.
  await waitFor("the pool to be reclaimed", async () => !(await series(proxy)).some((s) => s.includes('user="app"')), 15000);
  expect(poolRows(await showPools(proxy)).filter((r) => r === "postgres|app")).toEqual([]);
  expect(await queriesTotal()).toBeGreaterThanOrEqual(before);
  // The next login makes it again.
  expect(await W.loginOutcome(proxy.port, { user: "app", database: "postgres" }, "app-pw")).toBe("ok");
}, 60000);

test("SQLSTATE label values are bounded: 200 client-chosen codes make at most 65 series", async () => {
  const proxy = await fx.proxyWith({ toml: USERS });
  const c = await W.login(proxy.port, { user: "app", database: "postgres" }, { password: "app-pw" });
  for (let i = 0; i < 200; i++) {
    const code = `Z${String(i).padStart(4, "0")}`;
    const r = await c.conn.simpleQuery(`DO $$BEGIN RAISE SQLSTATE '${code}'; END$$`);
    expect(r.error?.code).toBe(code);
  }
  c.conn.quit();
  const errorSeries = (await series(proxy)).filter((s) => s.startsWith("heliosproxy_errors_total{"));
  expect(errorSeries.length).toBeLessThanOrEqual(65);
  expect(errorSeries).toContainEqual(expect.stringContaining('sqlstate="other"'));
}, 60000);
