// Cost per request of the schema-routing decision (onQuery): cache hit, literal-only miss and full miss, with and without observed temperature.

import { queryCtx, type RequestCtx } from "../src/client/request-ctx.ts";
import type { SessionCtx } from "../src/core/hooks.ts";
import { QueryShapeCache } from "../src/sql/fingerprint.ts";
import { parseSettings } from "../src/modules/schema-routing/config.ts";
import { SchemaRouter } from "../src/modules/schema-routing/router.ts";
import { fmt } from "./lib.ts";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 7;

const SECTION = {
  groups: { reporting: ["node3"], oltp: ["node2"] },
  rules: [
    { tables: ["analytics.*", "events_archive_*"], group: "reporting" },
    { tables: ["public.orders", "customers"], schemas: ["shop_*"], group: "oltp" },
    { tables: ["ledger_*", "audit.*", "*_secret"], group: "primary" },
  ],
  workloads: { analytics: "reporting", vector: "reporting", oltp: "oltp" },
  temperature: { cold_tables: ["*_2019", "archive.*"], cold_group: "reporting" },
};

const TEXTS = [
  (i: number) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`,
  (i: number) => `SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = ${i} AND o.total > 10.50`,
  (i: number) => `select id, email from users where email = 'user${i}@example.com' and deleted_at is null limit 1`,
  (i: number) => `SELECT day, count(*) FROM analytics.events WHERE day > now() - interval '${i} days' GROUP BY day`,
];

const session: SessionCtx = { id: 1, user: "app", database: "app", applicationName: "", remoteAddress: "unix", tls: false, startedAt: 0 };
const enc = new TextEncoder();
let sink = 0;

/** ns per request: `count` requests over texts made beforehand (a fresh RequestCtx each, as the proxy makes); best of ROUNDS. */
function measure(texts: (round: number) => Uint8Array[], run: (q: RequestCtx) => void, shapes: () => QueryShapeCache): number {
  const results: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const bytes = texts(r);
    const sc = shapes();
    const t0 = Bun.nanoseconds();
    for (let i = 0; i < bytes.length; i++) run(queryCtx(session, "I", bytes[i]!, sc, () => null));
    results.push((Bun.nanoseconds() - t0) / bytes.length);
  }
  return Math.min(...results);
}

const COUNT = quick ? 20_000 : 100_000;
const shapesOf = TEXTS.length;
const same = Array.from({ length: COUNT }, (_, i) => enc.encode(TEXTS[i % shapesOf]!(7)));
let serial = 0;
/** Fresh texts: literals differ (same tables), or the table names differ too. */
const literals = () => Array.from({ length: COUNT }, (_, i) => enc.encode(TEXTS[i % shapesOf]!(++serial)));
const tables = () => Array.from({ length: COUNT }, (_, i) => enc.encode(TEXTS[i % shapesOf]!(1).replace(/FROM (\w+)/i, `FROM $1_${++serial}`)));

function row(name: string, observe: boolean, texts: () => Uint8Array[], freshShapes: boolean): void {
  const section = observe ? { ...SECTION, temperature: { ...SECTION.temperature, observe: true } } : SECTION;
  const router = new SchemaRouter(parseSettings(section), { now: performance.now() });
  const shared = new QueryShapeCache();
  const shapes = () => (freshShapes ? new QueryShapeCache() : shared);
  for (const b of same.slice(0, 1000)) router.decide(queryCtx(session, "I", b, shared, () => null)); // warm-up
  const base = measure(texts, (q) => void (sink += q.sql().length), shapes);
  const decide = measure(texts, (q) => void (sink += router.decide(q) === undefined ? 0 : 1), shapes);
  console.log(`| ${name}`.padEnd(58) + `| ${fmt(decide)}`.padEnd(12) + `| ${fmt(base)}`.padEnd(12) + `| ${fmt(decide - base)}`.padEnd(12) + "|");
}

console.log(`schema routing decision, Bun ${Bun.version}: 3 rules (9 patterns), cold rules, 3 workload classes; texts of 4 shapes`);
console.log(`ns per request, best of ${ROUNDS} rounds of ${COUNT} requests; "ctx + text" is making the RequestCtx and decoding its text (paid once by whichever module asks first); "module" is the rest\n`);
console.log("| case".padEnd(58) + "| total".padEnd(12) + "| ctx + text".padEnd(12) + "| module".padEnd(12) + "|");
console.log("|" + "-".repeat(57) + ("|" + "-".repeat(11)).repeat(3) + "|");
row("hit: same texts again", false, () => same, false);
row("hit, observe = true (per-table read counts)", true, () => same, false);
row("miss, literals differ (shape cache: one lexer pass)", false, literals, true);
row("miss, new tables (lexer pass + tablesTouched + rules)", false, tables, true);
row("miss, new tables, observe = true", true, tables, true);
if (sink === 42) console.log("");
