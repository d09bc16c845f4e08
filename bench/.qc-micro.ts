import { QueryCache } from "../src/modules/query-cache/index.ts";
import { configure } from "../src/modules/query-cache/config.ts";
import { loadParser, parseSql } from "../src/sql/classify.ts";
import { shapeOf } from "../src/modules/query-cache/shape.ts";
await loadParser();
const s = configure({ enabled: true, mode: "all", invalidation: "proxy", ttl_secs: 60, l1_max_bytes: 1 << 26, l2_max_bytes: 0, l2_compression: "zstd", max_result_bytes: 1 << 20, deny_functions: [], cacheable_functions: [], dependencies: {}, cascades: {}, function_writes: {}, rules: [] });
const qc = new QueryCache(s) as any;
const session = { id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0, params: new Map([["user", "u"]]) };
const mk = (sql: string) => ({ session, protocol: "simple" as const, txStatus: "T" as const, sql: () => sql, sqlBytes: () => new Uint8Array(), facts: () => { throw 1; }, fingerprint: () => "x", parse: () => parseSql(sql), requestBytes: () => new Uint8Array([81]) });
const N = 100000;
const texts = Array.from({ length: N }, (_, i) => `UPDATE pgbench_accounts SET abalance = abalance + ${i % 5000} WHERE aid = ${i};`);
const qs = texts.map(mk);
for (let r = 0; r < 3; r++) {
let t = performance.now();
for (let i = 0; i < N; i++) shapeOf(texts[i]!);
console.log("shapeOf µs", ((performance.now() - t) * 1000 / N).toFixed(2));
t = performance.now();
for (let i = 0; i < N; i++) qc.known(texts[i], qs[i]);
console.log("known µs", ((performance.now() - t) * 1000 / N).toFixed(2));
t = performance.now();
for (let i = 0; i < N; i++) qc.onQuery(qs[i]);
console.log("onQuery µs", ((performance.now() - t) * 1000 / N).toFixed(2));
}
