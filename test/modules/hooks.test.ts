// The hook points on the query path, driven by real clients through an in-process proxy: Reject, Reply and Rewrite answered in order, RouteHint, and onResult figures.

import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import pg from "pg";
import postgres from "postgres";
import { startProxy, type RunningProxy } from "../../src/proxy.ts";
import { parseConfig } from "../../src/config/load.ts";
import { freePort } from "../../src/util/net.ts";
import { configureLogging } from "../../src/util/log.ts";
import type { QueryCtx, QueryDecision, ResultCtx } from "../../src/core/hooks.ts";
import { build } from "../../src/protocol/writer.ts";
import { Be } from "../../src/protocol/codes.ts";

let proxy: RunningProxy;
/** What onResult saw: the result's fields and its query's text, copied (the objects are reused once the hook returns). */
let results: (ResultCtx & { sql: string })[] = [];
let decide: (q: QueryCtx) => void | QueryDecision = () => {};
const seen: { sql: string; protocol: string; tx: string; fp: string }[] = [];

/** RowDescription (one text column) + DataRow + CommandComplete: a module's cached answer. */
function reply(column: string, value: string) {
  return build((w) => {
    w.msg(Be.RowDescription).int16(1).cstr(column).int32(0).int16(0).int32(25).int16(-1).int32(-1).int16(0).end();
    w.msg(Be.DataRow).int16(1).int32(Buffer.byteLength(value)).str(value).end();
    w.msg(Be.CommandComplete).cstr("SELECT 1").end();
  });
}

beforeAll(async () => {
  const cfg = parseConfig(
    `[proxy]\nlisten_address = "127.0.0.1:${freePort()}"\nadmin_address = "127.0.0.1:${freePort()}"\nlog_level = "error"\n[auth]\nmethod = "trust"\n[[nodes]]\nhost = "127.0.0.1"\n`,
    "hooks.toml",
  );
  proxy = await startProxy(cfg, { configPath: "" });
  proxy.ctx.hooks = {
    onQuery: [
      (q) => {
        seen.push({ sql: q.sql(), protocol: q.protocol, tx: q.txStatus, fp: q.fingerprint() });
        return decide(q);
      },
    ],
    onResult: [(r) => void results.push({ ...r, sql: r.query.sql() })],
    onClose: [],
    resultText: true,
  };
});

afterAll(async () => {
  await proxy?.stop();
  configureLogging("info", "text"); // the in-process proxy set the shared logger to "error"
});

beforeEach(() => {
  results = [];
  seen.length = 0;
  decide = () => {};
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "test" });
  await c.connect();
  return c;
}

test("onResult: rows, tag, node, error SQLSTATE and transaction status per request; QueryCtx facts", async () => {
  const c = await connect();
  await c.query("SELECT generate_series(1, 5)");
  await c.query({ text: "SELECT $1::int + 1 AS x", values: [41] });
  await c.query("SELECT 1/0").catch(() => {});
  await c.query("BEGIN");
  await c.query("SELECT 1");
  await c.query("COMMIT");
  await c.end();
  expect(results.map((r) => [r.sql, r.commandTag, r.rows, r.txStatus, r.error?.code ?? null, r.node])).toEqual([
    ["SELECT generate_series(1, 5)", "SELECT 5", 5, "I", null, "node1"],
    ["SELECT $1::int + 1 AS x", "SELECT 1", 1, "I", null, "node1"],
    ["SELECT 1/0", "", 0, "I", "22012", "node1"],
    ["BEGIN", "BEGIN", 0, "T", null, "node1"],
    ["SELECT 1", "SELECT 1", 1, "T", null, "node1"],
    ["COMMIT", "COMMIT", 0, "I", null, "node1"],
  ]);
  expect(results.every((r) => r.durationMs >= 0 && r.durationMs < 5000)).toBe(true);
  expect(seen.map((s) => [s.protocol, s.tx])).toEqual([["simple", "I"], ["extended", "I"], ["simple", "I"], ["simple", "I"], ["simple", "T"], ["simple", "T"]]);
  // Literals do not change the fingerprint.
  expect(seen[0]!.fp).toBe((await (async () => {
    const d = await connect();
    await d.query("SELECT generate_series(2, 9)");
    await d.end();
    return seen.at(-1)!.fp;
  })()));
});

test("Reject: outside a transaction the client gets the error and goes on; inside one, the transaction fails as in PostgreSQL", async () => {
  decide = (q) => (q.sql().includes("forbidden") ? { kind: "reject", sqlstate: "42501", message: "no forbidden tables" } : undefined);
  const c = await connect();
  const e1 = await c.query("SELECT * FROM forbidden").catch((e: Error & { code?: string }) => `${e.code} ${e.message}`);
  expect(e1).toBe("42501 no forbidden tables");
  expect((await c.query("SELECT 2 AS n")).rows[0].n).toBe(2);
  // Extended protocol: dropped up to Sync, answered once.
  const e2 = await c.query({ text: "SELECT $1::text AS forbidden", values: ["x"] }).catch((e: Error & { code?: string }) => e.code);
  expect(e2).toBe("42501");
  await c.query("BEGIN");
  await c.query("SELECT 3");
  const e3 = await c.query("SELECT * FROM forbidden").catch((e: Error & { code?: string }) => e.code);
  expect(e3).toBe("42501");
  const e4 = await c.query("SELECT 4").catch((e: Error & { code?: string }) => e.code);
  expect(e4).toBe("25P02");
  await c.query("ROLLBACK");
  expect((await c.query("SELECT 5 AS n")).rows[0].n).toBe(5);
  await c.end();
});

test("Reply: a module answers without a server; pipelined requests keep their order", async () => {
  decide = (q) => (q.sql().startsWith("SELECT 'cached'") ? { kind: "reply", messages: reply("v", "from-module") } : undefined);
  const sql = postgres({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "test", max: 1 });
  const [a, b, c] = await Promise.all([sql`SELECT 1 AS v`, sql.unsafe("SELECT 'cached' AS v"), sql`SELECT 3 AS v`]);
  expect([a[0]!.v, b[0]!.v, c[0]!.v]).toEqual([1, "from-module", 3]);
  await sql.end();
  const p = await connect();
  expect((await p.query("SELECT 'cached' AS v")).rows).toEqual([{ v: "from-module" }]);
  await p.end();
});

test("Rewrite: the server runs the module's text instead (simple protocol)", async () => {
  decide = (q) => (q.sql() === "SELECT 'old' AS v" ? { kind: "rewrite", sql: "SELECT 'new' AS v" } : undefined);
  const c = await connect();
  expect((await c.query("SELECT 'old' AS v")).rows).toEqual([{ v: "new" }]);
  expect((await c.query("SELECT 'other' AS v")).rows).toEqual([{ v: "other" }]);
  await c.end();
});

test("COPY through the hooks: one request, its rows counted", async () => {
  const c = await connect();
  await c.query("CREATE TEMP TABLE hooked (a int)");
  await c.query("INSERT INTO hooked SELECT generate_series(1, 3)");
  await c.query("COPY (SELECT a FROM hooked) TO STDOUT").catch(() => {});
  await c.end();
  expect(results.map((r) => r.commandTag)).toEqual(["CREATE TABLE", "INSERT 0 3", "COPY 3"]);
});

test("module config errors name the key: routing_hints and lag_routing", async () => {
  const { moduleSettings } = await import("../../src/config/load.ts");
  const err = (section: string, raw: Record<string, unknown>) => {
    try {
      moduleSettings(section, raw);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("accepted");
  };
  expect(err("routing_hints", { node_hint_users: "bob" })).toBe('proxy.toml: routing_hints.node_hint_users: expected an array of strings, got "bob"');
  expect(err("routing_hints", { allow_node_hint: true })).toBe("proxy.toml: routing_hints.allow_node_hint: unknown key (did you mean allow_node_hints?)");
  expect(err("lag_routing", { read_your_writes: "always" })).toBe('proxy.toml: lag_routing.read_your_writes: expected one of off|local|global|fast|wait, got "always"');
  expect(err("lag_routing", { max_lag_ms: -1 })).toBe("proxy.toml: lag_routing.max_lag_ms: expected a number in 0..3600000, got -1");
  expect(moduleSettings("lag_routing", { read_your_writes: "wait", wait_timeout_ms: 50 })).toMatchObject({ read_your_writes: "wait", wait_timeout_ms: 50, max_lag_ms: 0 });
});
