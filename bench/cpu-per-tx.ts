// Proxy CPU per transaction (utime+stime of the proxy process over a fixed pgbench run): a load-insensitive check of the request path, default and with [transaction_replay]; --cache-hot: query-cache hits instead.
//
//   bun bench/cpu-per-tx.ts [--transactions N] [--clients N] [--rounds N] [--protocol simple|extended|prepared] [--cache-hot]

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuMicros, ensurePgbenchDatabase, median, parseFlags, runPgbench, startHelios } from "./lib.ts";

const o = { transactions: 20000, clients: 10, rounds: 3, protocol: "simple", db: "helios_bench_cpu", cacheHot: false };

function usage(exitCode = 0): never {
  console.log(`bun bench/cpu-per-tx.ts [options]
  --transactions N   pgbench -t per client (default 20000)
  --clients N        pgbench -c (default 10)
  --rounds N         runs per setup; the median is printed (default 3)
  --protocol P       pgbench -M: simple, extended or prepared (default simple)
  --cache-hot        [query_cache] on, the hot set of bench/query-cache.ts (1,000 keys, SELECT abalance ... WHERE aid = :aid), cache warm: every measured transaction is a hit`);
  process.exit(exitCode);
}

parseFlags(process.argv.slice(2), usage, {
  "--transactions": (v) => (o.transactions = Number(v())),
  "--clients": (v) => (o.clients = Number(v())),
  "--rounds": (v) => (o.rounds = Number(v())),
  "--protocol": (v) => (o.protocol = v()),
  "--cache-hot": () => (o.cacheHot = true),
});

ensurePgbenchDatabase(o.db, 1);
const setups: [string, string][] = o.cacheHot
  ? [["query_cache hits", "[query_cache]\nl1_max_bytes = 268435456\nl2_max_bytes = 0\nttl_secs = 3600\n"]]
  : [
      ["default", ""],
      ["transaction_replay", "[transaction_replay]\nenabled = true\n"],
    ];
const hot = join(mkdtempSync(join(tmpdir(), "helios-bench-cpu-")), "hot.sql");
writeFileSync(hot, "\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n");
const workload = o.cacheHot ? ["-n", "-f", hot] : ["-S"];
for (const [name, toml] of setups) {
  const per: number[] = [];
  for (let i = 0; i < o.rounds; i++) {
    const proxy = await startHelios({ toml });
    try {
      await runPgbench([...workload, "-M", o.protocol, "-c", String(o.clients), "-t", "500"], proxy.port, o.db); // warm-up (and the cache filled)
      const before = cpuMicros(proxy.pid);
      const r = await runPgbench([...workload, "-M", o.protocol, "-c", String(o.clients), "-t", String(o.transactions)], proxy.port, o.db);
      const used = cpuMicros(proxy.pid) - before;
      if (r.exitCode !== 0 || r.failed > 0) throw new Error(`pgbench failed: ${r.firstError}`);
      per.push(used / r.transactions);
    } finally {
      await proxy.stop();
    }
  }
  console.log(`${name.padEnd(20)} ${median(per).toFixed(2)} µs CPU/tx (runs: ${per.map((x) => x.toFixed(2)).join(", ")}; pgbench ${o.cacheHot ? "hot set" : "-S"} -M ${o.protocol} -c ${o.clients} -t ${o.transactions})`);
}
