// Cost per query of the sql/ lexer layer (tokens, normalise + fingerprint, hints, tables) on OLTP and analytic texts.

import { analyzeQuery, normalize, QueryShapeCache } from "../src/sql/fingerprint.ts";
import { parseHints, parseHintsBytes } from "../src/sql/hints.ts";
import { Lexer, Tok } from "../src/sql/lexer.ts";
import { tablesTouched } from "../src/sql/tables.ts";
import { fmt } from "./lib.ts";

const quick = process.argv.includes("--quick");
const withParser = !process.argv.includes("--no-parser");
const ROUND_MS = quick ? 40 : 100;
const ROUNDS = quick ? 3 : 11;

// ---- workload: texts that differ in their literals, as a proxy sees them ---------------------

const rnd = (n: number) => Math.floor(Math.random() * n);

function oltp(i: number): string {
  switch (i % 6) {
    case 0:
      return `SELECT abalance FROM pgbench_accounts WHERE aid = ${rnd(1e7)};`;
    case 1:
      return `UPDATE pgbench_accounts SET abalance = abalance + ${rnd(1e4) - 5000} WHERE aid = ${rnd(1e7)};`;
    case 2:
      return `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${rnd(100)}, ${rnd(10)}, ${rnd(1e7)}, ${rnd(1e4)}, CURRENT_TIMESTAMP);`;
    case 3:
      return `select id, email, created_at from users where email = 'user${rnd(1e6)}@example.com' and deleted_at is null limit 1`;
    case 4:
      return `/*+ route=standby max_lag=${rnd(500)}ms */ SELECT * FROM orders WHERE customer_id = $1 AND status = 'open' ORDER BY created_at DESC LIMIT 20`;
    default:
      return `SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = ${rnd(1e6)} AND o.total > ${rnd(1000)}.50`;
  }
}

function analytic(i: number): string {
  return `-- daily revenue report ${i}
WITH recent AS (
  SELECT o.id, o.customer_id, o.total, o.created_at, date_trunc('day', o.created_at) AS day
  FROM sales.orders o
  WHERE o.created_at >= now() - interval '${rnd(90)} days' AND o.status IN ('paid', 'shipped', 'delivered')
), ranked AS (
  SELECT r.*, row_number() OVER (PARTITION BY r.customer_id ORDER BY r.total DESC) AS rn,
         sum(r.total) OVER (PARTITION BY r.day) AS day_total
  FROM recent r
)
SELECT c.region, k.day, count(*) AS orders, sum(k.total)::numeric(12,2) AS revenue,
       avg(k.total) FILTER (WHERE k.rn = 1) AS top_avg, /* best customer per day */
       percentile_cont(0.95) WITHIN GROUP (ORDER BY k.total) AS p95,
       string_agg(DISTINCT c.segment, ', ') AS segments
FROM ranked k
JOIN sales.customers c ON c.id = k.customer_id
LEFT JOIN sales.regions g ON g.code = c.region AND g.active = true
WHERE k.total BETWEEN ${rnd(10)} AND ${1000 + rnd(9000)} AND c.name NOT LIKE E'test\\\\_%' AND c.note <> $$it's internal$$
GROUP BY c.region, k.day
HAVING count(*) > ${rnd(20)}
ORDER BY k.day DESC, revenue DESC NULLS LAST
LIMIT ${100 + rnd(900)}`;
}

const N = 512;
const sets: Record<string, string[]> = {
  oltp: Array.from({ length: N }, (_, i) => oltp(i)),
  analytic: Array.from({ length: N }, (_, i) => analytic(i)),
};
sets.mix = sets.oltp!.map((q, i) => (i % 10 === 9 ? sets.analytic![i]! : q));

// ---- measurement -------------------------------------------------------------------------

let sink = 0;
const encoder = new TextEncoder();
const bytesOf = Object.fromEntries(Object.entries(sets).map(([k, qs]) => [k, qs.map((q) => encoder.encode(q))]));
const lx = new Lexer();
const cache = new QueryShapeCache(N * 4);
const small = new QueryShapeCache(64); // smaller than the set: every lookup misses, inserts and evicts
let parseSync: ((q: string) => unknown) | null = null;
if (withParser) {
  const m = await import("libpg-query");
  await m.loadModule();
  parseSync = m.parseSync;
}

const decoder = new TextDecoder();
/** Each operation gets a text and its UTF-8 bytes (what the proxy holds). */
const ops: [string, (q: string, b: Uint8Array) => void][] = [
  ["lexer (all tokens)", (q) => {
    lx.reset(q);
    while (lx.next() !== Tok.End) sink += lx.end;
  }],
  ["analyzeQuery + .fingerprint", (q) => void (sink += analyzeQuery(q).fingerprint.length)],
  ["  cached: QueryShapeCache hit, same string", (q) => void (sink += cache.get(q).constants)],
  ["  cached: hit, text decoded from bytes", (_q, b) => void (sink += cache.get(decoder.decode(b)).constants)],
  ["  cached: miss (analyze + LRU insert/evict)", (q) => void (sink += small.get(q).constants)],
  ["  (TextDecoder.decode alone, for reference)", (_q, b) => void (sink += decoder.decode(b).length)],
  ["normalize (text only: classifier cache key)", (q) => void (sink += normalize(q).length)],
  ["parseHints (string)", (q) => void (sink += parseHints(q) === null ? 0 : 1)],
  ["parseHintsBytes (UTF-8 in)", (_q, b) => void (sink += parseHintsBytes(b, 0, b.length) === null ? 0 : 1)],
  ["tablesTouched", (q) => void (sink += tablesTouched(q).length)],
];
if (parseSync !== null) ops.push(["libpg-query parseSync (reference)", (q) => void (sink += parseSync!(q) ? 1 : 0)]);


/** ns per query over the set: the best of ROUNDS rounds of ~ROUND_MS each (other load only adds time). */
function measure(fn: (q: string, b: Uint8Array) => void, qs: string[], bs: Uint8Array[]): number {
  for (let i = 0; i < qs.length; i++) fn(qs[i]!, bs[i]!); // warm-up (and fills the cache)
  const results: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0;
    const t0 = Bun.nanoseconds();
    let t = t0;
    while (t - t0 < ROUND_MS * 1e6) {
      for (let i = 0; i < qs.length; i++) fn(qs[i]!, bs[i]!);
      n += qs.length;
      t = Bun.nanoseconds();
    }
    results.push((t - t0) / n);
  }
  return Math.min(...results);
}

const avgLen = (qs: string[]) => qs.reduce((a, q) => a + q.length, 0) / qs.length;
console.log(`sql/ lexer layer, Bun ${Bun.version}, ${N} texts per set; ns/query (MB/s of SQL text)`);
console.log(`average text length: ${Object.entries(sets).map(([k, v]) => `${k} ${fmt(avgLen(v))} B`).join(", ")}; oltp: 1 in 6 has a hint, mix: 1 in 10 is analytic`);
console.log(`best of ${ROUNDS} rounds of ${ROUND_MS} ms per cell; \`--quick\` shortens, \`--no-parser\` drops the libpg-query row\n`);
const cols = Object.keys(sets);
console.log("| operation".padEnd(46) + cols.map((c) => `| ${c}`.padEnd(22)).join("") + "|");
console.log("|" + "-".repeat(45) + cols.map(() => "|" + "-".repeat(21)).join("") + "|");
for (const [name, fn] of ops) {
  const cells = cols.map((c) => {
    const qs = sets[c]!;
    const ns = measure(fn, qs, bytesOf[c]!);
    const mbs = (avgLen(qs) / ns) * 1e3;
    return `| ${fmt(ns)} (${fmt(mbs)})`.padEnd(22);
  });
  console.log(`| ${name}`.padEnd(46) + cells.join("") + "|");
}
if (sink === 42) console.log("");
