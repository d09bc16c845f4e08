// Proxy CPU per transaction (utime+stime of the proxy process over a fixed pgbench run): a load-insensitive check of the request path, default and with [transaction_replay].
//
//   bun bench/cpu-per-tx.ts [--transactions N] [--clients N] [--rounds N] [--protocol simple|extended|prepared]

import { cpuMicros, ensurePgbenchDatabase, median, parseFlags, runPgbench, startHelios } from "./lib.ts";

const o = { transactions: 20000, clients: 10, rounds: 3, protocol: "simple", db: "helios_bench_cpu" };

function usage(exitCode = 0): never {
  console.log(`bun bench/cpu-per-tx.ts [options]
  --transactions N   pgbench -t per client (default 20000)
  --clients N        pgbench -c (default 10)
  --rounds N         runs per setup; the median is printed (default 3)
  --protocol P       pgbench -M: simple, extended or prepared (default simple)`);
  process.exit(exitCode);
}

parseFlags(process.argv.slice(2), usage, {
  "--transactions": (v) => (o.transactions = Number(v())),
  "--clients": (v) => (o.clients = Number(v())),
  "--rounds": (v) => (o.rounds = Number(v())),
  "--protocol": (v) => (o.protocol = v()),
});

ensurePgbenchDatabase(o.db, 1);
const setups: [string, string][] = [
  ["default", ""],
  ["transaction_replay", "[transaction_replay]\nenabled = true\n"],
];
for (const [name, toml] of setups) {
  const per: number[] = [];
  for (let i = 0; i < o.rounds; i++) {
    const proxy = await startHelios({ toml });
    try {
      await runPgbench(["-S", "-M", o.protocol, "-c", String(o.clients), "-t", "500"], proxy.port, o.db); // warm-up
      const before = cpuMicros(proxy.pid);
      const r = await runPgbench(["-S", "-M", o.protocol, "-c", String(o.clients), "-t", String(o.transactions)], proxy.port, o.db);
      const used = cpuMicros(proxy.pid) - before;
      if (r.exitCode !== 0 || r.failed > 0) throw new Error(`pgbench failed: ${r.firstError}`);
      per.push(used / r.transactions);
    } finally {
      await proxy.stop();
    }
  }
  console.log(`${name.padEnd(20)} ${median(per).toFixed(2)} µs CPU/tx (runs: ${per.map((x) => x.toFixed(2)).join(", ")}; pgbench -S -M ${o.protocol} -c ${o.clients} -t ${o.transactions})`);
}
