// CPU time the query cache's hooks spend on a request they cannot answer: pgbench tpcb statements (7 per transaction, every one a miss or a write) through onQuery/onResult, in process.
//
//   bun bench/query-cache-micro.ts [TRANSACTIONS]
//
// Stand-in request views, no sockets: the number is the cache's own cost per transaction (process CPU time, so a busy machine shifts it little).

import { QueryCache } from "../src/modules/query-cache/index.ts";
import { configure } from "../src/modules/query-cache/config.ts";
import { moduleSettings } from "../src/config/load.ts";
import { loadParser, parseSql } from "../src/sql/classify.ts";
import { Effect } from "../src/sql/session-effects.ts";
import type { QueryCtx, ResultCtx } from "../src/core/hooks.ts";

await loadParser();
const cache = new QueryCache(configure(moduleSettings("query_cache", {}) as Record<string, unknown>));
const enc = new TextEncoder();
const session = { id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0, params: new Map() };
const EMPTY = new Uint8Array(0);

/** A simple Query's view; its session effects come from the proxy's own scan (made anyway in pooled modes), none in tpcb. */
function view(sql: string, txStatus: "I" | "T"): QueryCtx {
  let tree: unknown;
  return {
    session,
    protocol: "simple",
    txStatus,
    sql: () => sql,
    sqlBytes: () => enc.encode(sql),
    facts: () => ({ fingerprint: "" }) as ReturnType<QueryCtx["facts"]>,
    fingerprint: () => "",
    parse: () => (tree ??= parseSql(sql)),
    effects: () => Effect.None,
    requestBytes: () => EMPTY,
    captureReply() {},
  };
}

function transaction(i: number): void {
  const aid = 1 + ((i * 7919) % 100_000);
  const tid = 1 + (i % 10);
  const delta = (i % 10_000) - 5000;
  const statements: [string, "I" | "T", "I" | "T"][] = [
    ["BEGIN;", "I", "T"],
    [`UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid};`, "T", "T"],
    [`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`, "T", "T"],
    [`UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid};`, "T", "T"],
    [`UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = 1;`, "T", "T"],
    [`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, 1, ${aid}, ${delta}, CURRENT_TIMESTAMP);`, "T", "T"],
    ["END;", "T", "I"],
  ];
  for (const [sql, before, after] of statements) {
    const q = view(sql, before);
    cache.onQuery(q);
    cache.onResult({ query: q, node: "", commandTag: "", rows: 0, durationMs: 0, txStatus: after } as ResultCtx);
  }
}

const n = Number(process.argv[2] ?? 40_000);
for (let i = 0; i < 5000; i++) transaction(i);
const best: number[] = [];
for (let round = 0; round < 5; round++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) transaction(5000 + round * n + i);
  const c = process.cpuUsage(c0);
  best.push((c.user + c.system) / n);
}
best.sort((a, b) => a - b);
console.log(`query cache hooks, pgbench tpcb (7 statements, all misses or writes): best ${best[0]!.toFixed(1)} µs, median ${best[2]!.toFixed(1)} µs CPU per transaction (${n} per round, 5 rounds)`);
