// A/B of proxy setups on pgbench tpcb: one proxy per setup (optionally from another checkout), rounds alternating their order, each setup's tps as a ratio to the first one's in the same round.
//
//   bun bench/tpcb-ab.ts [--rounds N] [--duration SECS] [--scale N] [--async-commit] [--rate TPS] NAME=TOML [NAME@CHECKOUT=TOML ...]
//
// e.g. bun bench/tpcb-ab.ts off= 'cache=[query_cache]' 'before@/path/to/old/checkout=[query_cache]'
// tps drifts between rounds (disk, other load) more than the differences looked for; the ratio
// within a round, and its median over rounds, is what compares. Each run also reports the proxy's CPU
// (utime + stime of its process, all threads) per transaction; with --rate every setup sees the same
// load, so that figure compares without the batching differences of runs at full speed.

import { cpuMicros, ensurePgbenchDatabase, fmt, median, parseFlags, psql, runPgbench, startHelios } from "./lib.ts";

const o = { rounds: 7, duration: 8, scale: 10, asyncCommit: false, rate: 0 };
const setups: { name: string; checkout: string; toml: string }[] = [];

function usage(exitCode = 0): never {
  console.log(`bun bench/tpcb-ab.ts [options] NAME=TOML [NAME@CHECKOUT=TOML ...]
  --rounds N         rounds; each runs every setup once, the order alternating (default 7)
  --duration SECS    pgbench -T per run (default 8)
  --scale N          pgbench scale of the database helios_cache_bench_tpcb (default 10; other scales get their own database)
  --async-commit     synchronous_commit = off for the runs: no fsync wait per commit, so the proxy's CPU is what limits
  --rate TPS         pgbench -R: the same fixed load for every setup (compare the proxy's CPU per transaction)
  NAME=TOML          a setup: its name and extra proxy config (\\n for newlines; empty for none); the first is the base
  NAME@CHECKOUT=TOML the proxy from another checkout of HeliosProxy (its bench/lib.ts starts it)`);
  process.exit(exitCode);
}

// Setups are the arguments that are neither flags nor a flag's value.
const WITH_VALUE = new Set(["--rounds", "--duration", "--scale", "--rate"]);
const flags: string[] = [];
const rest: string[] = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (WITH_VALUE.has(argv[i]!)) flags.push(argv[i]!, argv[++i] ?? "");
  else if (argv[i]!.startsWith("--")) flags.push(argv[i]!);
  else rest.push(argv[i]!);
}
parseFlags(flags, usage, {
  "--rounds": (v) => (o.rounds = Number(v())),
  "--duration": (v) => (o.duration = Number(v())),
  "--scale": (v) => (o.scale = Number(v())),
  "--async-commit": () => (o.asyncCommit = true),
  "--rate": (v) => (o.rate = Number(v())),
});
for (const a of rest) {
  const eq = a.indexOf("=");
  if (eq <= 0) usage(2);
  const [name, checkout = ""] = a.slice(0, eq).split("@");
  setups.push({ name: name!, checkout, toml: a.slice(eq + 1).replaceAll("\\n", "\n") });
}
if (setups.length < 2) usage(2);

const db = o.scale === 10 ? "helios_cache_bench_tpcb" : `helios_cache_bench_tpcb_s${o.scale}`;
ensurePgbenchDatabase(db, o.scale);
if (o.asyncCommit) psql(`ALTER DATABASE ${db} SET synchronous_commit = off`);
const procs = [];
const tps: number[][] = setups.map(() => []);
const cpu: number[][] = setups.map(() => []);
try {
  for (const s of setups) {
    const start: typeof startHelios = s.checkout === "" ? startHelios : (await import(`${s.checkout}/bench/lib.ts`)).startHelios;
    procs.push(await start({ maxConnections: 20, toml: s.toml }));
  }
  const args = ["-n", "-c", "10", "-j", "2", ...(o.rate > 0 ? ["-R", String(o.rate)] : [])];
  for (const p of procs) await runPgbench([...args, "-T", "2"], p.port, db); // JIT and pools warm
  for (let r = 0; r < o.rounds; r++) {
    const order = setups.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    const line: string[] = [];
    for (const i of order) {
      const before = cpuMicros(procs[i]!.pid);
      const x = await runPgbench([...args, "-T", String(o.duration)], procs[i]!.port, db);
      const perTx = (cpuMicros(procs[i]!.pid) - before) / x.transactions;
      if (x.exitCode !== 0 || x.failed > 0) throw new Error(`pgbench failed against ${setups[i]!.name}: ${x.firstError}`);
      tps[i]!.push(x.tps);
      cpu[i]!.push(perTx);
      line.push(`${setups[i]!.name} ${fmt(x.tps)} tps ${fmt(perTx)} µs/tx`);
    }
    console.log(`round ${r + 1}: ${line.join(", ")}`);
  }
} finally {
  for (const p of procs) await p.stop();
  if (o.asyncCommit) psql(`ALTER DATABASE ${db} RESET synchronous_commit`);
}
console.log(`\npgbench tpcb -c 10 -j 2${o.rate > 0 ? ` -R ${o.rate}` : ""}, scale ${o.scale}${o.asyncCommit ? ", synchronous_commit = off" : ""}, ${o.rounds} round(s) of ${o.duration} s:`);
for (let i = 0; i < setups.length; i++) console.log(`  ${setups[i]!.name}: proxy CPU median ${fmt(median(cpu[i]!))} µs/tx (rounds ${cpu[i]!.map((x) => fmt(x)).join(", ")})`);
for (let i = 1; i < setups.length; i++) {
  const ratios = tps[i]!.map((v, k) => v / tps[0]![k]!);
  console.log(`  ${setups[i]!.name} / ${setups[0]!.name}: median ${fmt(median(ratios), 3)} (rounds ${ratios.map((x) => fmt(x, 3)).join(", ")})`);
}
