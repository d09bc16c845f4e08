// Schema routing without a cluster: config errors name the key and line, table/schema matching, precedence, observed temperature and its bounds.

import { expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { queryCtx } from "../../src/client/request-ctx.ts";
import type { RouteHint, SessionCtx } from "../../src/core/hooks.ts";
import { QueryShapeCache } from "../../src/sql/fingerprint.ts";
import { moduleSettings } from "../../src/config/load.ts";
import type { SchemaRoutingSettings } from "../../src/modules/schema-routing/config.ts";
import { SchemaRouter } from "../../src/modules/schema-routing/router.ts";
import { checkGroupNodes } from "../../src/modules/schema-routing/index.ts";

/** A section's settings, checked as the loader checks it. */
const parseSettings = (section: Record<string, unknown>) => moduleSettings("schema_routing", section) as SchemaRoutingSettings;

const BASE = `[proxy]\nlisten_address = "127.0.0.1:6432"\nadmin_address = "127.0.0.1:9090"\n[[nodes]]\nhost = "127.0.0.1"\n`;

/** The first issue of a config that must fail: "line|key|detail". */
function failure(section: string): string {
  try {
    parseConfig(BASE + section, "sr.toml");
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const i = e.issues[0]!;
    return `${i.line}|${i.key}|${i.detail}`;
  }
  throw new Error("config was accepted");
}

test("config errors name the dotted key, its line and what was expected", () => {
  const at = (n: number) => n + 5; // BASE has 5 lines
  expect(failure(`[schema_routing]\nenable = true\n`)).toBe(`${at(2)}|schema_routing.enable|unknown key (did you mean enabled?)`);
  expect(failure(`[schema_routing.groups]\nreporting = []\n`)).toBe(`${at(2)}|schema_routing.groups.reporting|expected a non-empty array of node names, got []`);
  expect(failure(`[schema_routing.groups]\nreporting = ["node3", 4]\n`)).toBe(`${at(2)}|schema_routing.groups.reporting|expected an array of strings, got an array`);
  expect(failure(`[schema_routing.groups]\nprimary = ["node1"]\n`)).toContain("|schema_routing.groups.primary|\"primary\" is a built-in group");
  // Rules are [[schema_routing.rules]]: the key carries the rule's index from 0.
  const rules = `[schema_routing.groups]\nreporting = ["node3"]\n[[schema_routing.rules]]\ntables = ["a"]\ngroup = "reporting"\n[[schema_routing.rules]]\ntables = ["b"]\ngroup = "reportng"\n`;
  // The loader places keys inside [[...]] entries at the first entry's header until it reads index
  // segments as numbers (then the key reads rules[1].group and the line is the group's own).
  const [line, key, detail] = failure(rules).split("|");
  expect(key).toMatch(/^schema_routing\.rules(\.1|\[1\])\.group$/);
  expect([at(3), at(8)]).toContain(Number(line));
  expect(detail).toBe(`unknown group "reportng" (groups: reporting, primary, standby, any)`);
  expect(failure(`[[schema_routing.rules]]\ntables = ["a.b.c"]\ngroup = "primary"\n`)).toMatch(/^\d+\|schema_routing\.rules(\.0|\[0\])\.tables(\.0|\[0\])\|expected "table" or "schema\.table" \(globs with \* and \?\), got "a\.b\.c"$/);
  expect(failure(`[[schema_routing.rules]]\ntables = []\ngroup = "any"\n`)).toContain("|schema_routing.rules[0].tables|a rule needs at least one table or schema pattern");
  expect(failure(`[[schema_routing.rules]]\ntables = ["x"]\n`)).toContain("|schema_routing.rules[0].group|required key is missing");
  expect(failure(`[[schema_routing.rules]]\ntables = ["x"]\ngroup = "any"\nnodes = ["node1"]\n`)).toContain("|schema_routing.rules[0].nodes|unknown key (valid: tables, schemas, group)");
  expect(failure(`[schema_routing]\nrules = { tables = ["x"] }\n`)).toContain("|schema_routing.rules|expected an array of tables ([[...]] entries), got a table");
  expect(failure(`[schema_routing.workloads]\nreporting = "any"\n`)).toBe(`${at(2)}|schema_routing.workloads.reporting|unknown key (valid: analytics, vector, oltp)`);
  expect(failure(`[schema_routing.workloads]\nvector = "gpu"\n`)).toBe(`${at(2)}|schema_routing.workloads.vector|unknown group "gpu" (groups: primary, standby, any)`);
  expect(failure(`[schema_routing.temperature]\nobserve = true\n`)).toContain("|schema_routing.temperature.cold_group|required when cold_tables is set or observe = true");
  expect(failure(`[schema_routing.temperature]\ncold_group = "standby"\ncold_after_secs = 0\n`)).toBe(`${at(3)}|schema_routing.temperature.cold_after_secs|expected a number in 0.001..31536000, got 0`);
  expect(failure(`[schema_routing]\ncache_size = 1\n`)).toBe(`${at(2)}|schema_routing.cache_size|expected an integer in 16..10000000, got 1`);
});

const FULL = {
  groups: { reporting: ["node3"], oltp: ["node2"], both: ["node2", "node3"] },
  rules: [
    { tables: ["analytics.*", "events_archive_*"], group: "reporting" },
    { tables: ["public.orders"], schemas: ["shop_?"], group: "oltp" },
    { tables: ["ledger"], group: "primary" },
  ],
  workloads: { analytics: "reporting", vector: "both" },
  temperature: { cold_tables: ["*_2019", "archive.*"], cold_group: "reporting" },
};

test("a full section parses to settings with defaults filled in", () => {
  const s = parseSettings(FULL);
  expect(s).toEqual({
    enabled: true,
    default_schema: "public",
    cache_size: 10000,
    groups: FULL.groups,
    rules: [
      { tables: ["analytics.*", "events_archive_*"], schemas: [], group: "reporting" },
      { tables: ["public.orders"], schemas: ["shop_?"], group: "oltp" },
      { tables: ["ledger"], schemas: [], group: "primary" },
    ],
    workloads: { analytics: "reporting", vector: "both" },
    temperature: { cold_tables: ["*_2019", "archive.*"], cold_group: "reporting", observe: false, cold_after_secs: 3600, max_tables: 10000 },
  });
  // The section as TOML goes through the loader too.
  const cfg = parseConfig(BASE + `[schema_routing.groups]\nreporting = ["node3"]\n[[schema_routing.rules]]\nschemas = ["analytics"]\ngroup = "reporting"\n`, "ok.toml");
  expect(cfg.modules.schema_routing).toMatchObject({ groups: { reporting: ["node3"] }, rules: [{ tables: [], schemas: ["analytics"], group: "reporting" }], cache_size: 10000 });
});

test("groups naming nodes the cluster does not have are refused at start, naming the group and the node", () => {
  const host = { nodes: () => ["node1", "node2"].map((name) => ({ name, role: "standby" as const, up: true, lagBytes: 0, lagSeconds: 0 })) };
  expect(() => checkGroupNodes(parseSettings(FULL), host)).toThrow('schema_routing.groups.reporting: node "node3" is not in [[nodes]] (nodes: node1, node2)');
  expect(() => checkGroupNodes(parseSettings({ groups: { oltp: ["node2"] } }), host)).not.toThrow();
});

// ---- decisions -------------------------------------------------------------------------------

const session: SessionCtx = { id: 1, user: "app", database: "app", applicationName: "", remoteAddress: "unix", tls: false, startedAt: 0 };
const shapes = new QueryShapeCache();
const enc = new TextEncoder();
const ctxOf = (sql: string) => queryCtx(session, "I", enc.encode(sql), shapes, () => null);

function routerWith(section: Record<string, unknown>, clock = { now: 0 }) {
  const r = new SchemaRouter(parseSettings(section), clock);
  /** The group a text is routed to: node list, a built-in target, or "-" for no opinion. */
  const where = (sql: string) => describe(r.decide(ctxOf(sql)));
  return { r, where, clock };
}
const describe = (h: RouteHint | undefined) => (h === undefined ? "-" : h.nodes !== undefined ? h.nodes.join(",") : h.target);

test("rules match schema-qualified, bare, glob and schema patterns; the first table a rule matches decides", () => {
  const { where } = routerWith(FULL);
  expect(where("SELECT * FROM analytics.events WHERE id = 1")).toBe("node3");
  expect(where("select * from ANALYTICS.Events")).toBe("node3"); // unquoted names fold to lower case
  expect(where('SELECT * FROM "Analytics".events')).toBe("-"); // a quoted name is exact
  expect(where("SELECT * FROM events_archive_2021 e")).toBe("node3");
  expect(where("SELECT * FROM other.events_archive_x")).toBe("node3"); // a bare pattern matches any schema
  expect(where("SELECT * FROM orders")).toBe("node2"); // bare name: default_schema (public)
  expect(where("SELECT * FROM public.orders")).toBe("node2");
  expect(where("SELECT * FROM app.public.orders")).toBe("node2"); // database prefix dropped
  expect(where("SELECT * FROM sales.orders")).toBe("-");
  expect(where("SELECT * FROM shop_1.items")).toBe("node2");
  expect(where("SELECT * FROM shop_12.items")).toBe("-");
  expect(where("SELECT * FROM ledger")).toBe("primary");
  // Across groups the first table (in text order) a rule matches decides.
  expect(where("SELECT * FROM orders o JOIN analytics.events e ON e.id = o.id")).toBe("node2");
  expect(where("SELECT * FROM analytics.events e JOIN orders o ON e.id = o.id")).toBe("node3");
  expect(where("SELECT * FROM users u JOIN ledger l ON true JOIN orders o ON true")).toBe("primary");
  // Subqueries and CTE bodies count; CTE names do not.
  expect(where("WITH analytics AS (SELECT 1) SELECT * FROM analytics")).toBe("-");
  expect(where("SELECT (SELECT count(*) FROM analytics.events) AS n")).toBe("node3");
  expect(where("SELECT 1")).toBe("-");
});

test("precedence: rule, then temperature, then workload class; writes, DDL and session commands get no opinion", () => {
  const { where, r } = routerWith(FULL);
  expect(where("SELECT * FROM logs_2019")).toBe("node3"); // cold by rule
  expect(where("SELECT * FROM archive.old JOIN orders ON true")).toBe("node2"); // a rule beats temperature
  expect(where("SELECT region, count(*) FROM users GROUP BY region")).toBe("node3"); // analytics
  expect(where("SELECT id, rank() OVER (ORDER BY score) FROM users")).toBe("node3");
  expect(where("SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5")).toBe("node2,node3"); // vector
  expect(where("SELECT kind, count(*) FROM items GROUP BY kind ORDER BY min(embedding <=> '[1]')")).toBe("node2,node3"); // vector over analytics
  expect(where("SELECT count(*) FROM orders GROUP BY 1")).toBe("node2"); // a rule beats the workload class
  expect(where("SELECT * FROM users WHERE id = 1")).toBe("-"); // oltp has no group here
  for (const sql of ["INSERT INTO analytics.events VALUES (1)", "UPDATE orders SET x = 1", "WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d", "CREATE TABLE analytics.t (i int)", "SET search_path = analytics", "BEGIN"])
    expect(where(sql)).toBe("-");
  const counts = Object.fromEntries(["rule", "cold_rule", "cold_observed", "analytics", "vector", "oltp", "none", "not_read"].map((k, i) => [k, r.decisions[i]]));
  expect(counts).toEqual({ rule: 2, cold_rule: 1, cold_observed: 0, analytics: 2, vector: 2, oltp: 0, none: 1, not_read: 6 });
  // Inside a transaction block the session keeps its server: no opinion, but counted.
  expect(describe(r.decide(queryCtx(session, "T", enc.encode("SELECT * FROM orders"), shapes, () => null)))).toBe("-");
  expect(r.decisions[8]).toBe(1);
  // A routing hint comment decides by itself (the same text without it is still routed by its tables).
  expect(where("/*+ route=primary */ SELECT * FROM orders")).toBe("-");
  expect(where("SELECT /*+ node=node3 */ * FROM orders")).toBe("-");
  expect(where("SELECT /* plain comment */ * FROM orders")).toBe("node2");
  expect(r.decisions[9]).toBe(2);
  // One frozen hint per group: a decision allocates nothing.
  expect(r.decide(ctxOf("SELECT * FROM orders"))).toBe(r.decide(ctxOf("SELECT * FROM public.orders WHERE id = 2"))!);
});

test("the decision is cached by text, and texts differing only in literals share one plan", () => {
  const { r, where } = routerWith({ ...FULL, workloads: { oltp: "oltp" } });
  for (let i = 0; i < 5; i++) expect(where("SELECT * FROM users WHERE id = 7")).toBe("node2");
  expect([r.hits, r.misses]).toEqual([4, 1]);
  for (let i = 0; i < 5; i++) expect(where(`SELECT * FROM analytics.events WHERE id = ${i}`)).toBe("node3");
  expect([r.hits, r.misses, r.cacheSize()]).toEqual([4, 6, 6]);
});

test("observed temperature: a table not read for cold_after_secs is cold for its next read; tables not seen count from the start", () => {
  const clock = { now: 1_000 };
  const { r, where } = routerWith({ groups: { reporting: ["node3"] }, temperature: { observe: true, cold_after_secs: 10, cold_group: "reporting" }, workloads: { oltp: "standby" } }, clock);
  expect(where("SELECT * FROM users")).toBe("standby"); // never read, but the proxy has just started
  clock.now += 9_000;
  expect(where("SELECT * FROM users WHERE id = 1")).toBe("standby");
  clock.now += 10_500;
  expect(where("SELECT * FROM users WHERE id = 2")).toBe("node3"); // 10.5 s since its last read
  expect(where("SELECT * FROM users WHERE id = 3")).toBe("standby"); // read just now: hot again
  expect(where("SELECT * FROM orders JOIN users ON true")).toBe("node3"); // orders: not read for 19.5 s since start
  clock.now += 5_000;
  const t = r.temperatures!;
  expect([...t.map.values()].map((s) => [s.name, s.reads, t.isCold(s, clock.now)])).toEqual([["public.users", 5, false], ["public.orders", 1, false]]);
  clock.now += 6_000;
  expect(t.isCold(t.map.get("public.users")!, clock.now)).toBe(true);
  expect([r.decisions[2], r.decisions[5]]).toEqual([2, 3]);
});

test("the tracked tables stay bounded; a table evicted and read again is judged by the newest read evicted", () => {
  const clock = { now: 0 };
  const { r, where } = routerWith({ groups: { cold: ["node3"] }, temperature: { observe: true, cold_after_secs: 1, cold_group: "cold", max_tables: 100 } }, clock);
  for (let i = 0; i < 1000; i++) {
    clock.now += 10;
    where(`SELECT * FROM t${i}`);
  }
  expect(r.temperatures!.map.size).toBeLessThanOrEqual(100);
  expect(r.temperatures!.map.has("public.t999")).toBe(true);
  // t0 was evicted long ago; the newest read evicted is under 1 s old, so t0 counts as hot.
  expect(where("SELECT * FROM t0")).toBe("-");
  clock.now += 5_000;
  // A cached plan holding an evicted entry fetches a live one.
  expect(where("SELECT * FROM t1")).toBe("node3");
  expect(r.temperatures!.map.get("public.t1")!.reads).toBe(1);
});
