// Proxy user-space instructions per pgbench tpcb transaction, counted by valgrind's callgrind on the proxy's main thread, per function with JavaScript functions named from JSC's jitdump; with several setups, each one's differences from the first.
//
//   bun bench/instructions.ts [--warm N] [--transactions N] [--scale N] [--top N] [--inclusive] [--keep DIR] NAME=TOML [NAME@CHECKOUT=TOML ...]
//
// e.g. bun bench/instructions.ts off= 'cache=[query_cache]' 'before@/path/to/old/checkout=[query_cache]'
// Needs valgrind (Debian: valgrind, which has callgrind_control and callgrind_annotate). Setups run
// one after another: each proxy starts under callgrind with counting off, pgbench warms it (the JIT
// compiles the request path), then callgrind counts the instructions of a measured pgbench run.
// Unlike CPU time, the count is the same for the same code and load, but for what depends on timing
// (what the JIT has compiled and inlined, how many requests one wake-up handles). JIT code is named
// by the function whose code was last loaded at that address; Bun's binary is stripped, so its
// natives stay `bun native 0x...`. valgrind runs the proxy tens of times slower: about a minute per
// setup with the defaults.

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ensurePgbenchDatabase, fmt, parseFlags, runPgbench, sh, startHelios } from "./lib.ts";

const o = { warm: 700, transactions: 300, scale: 10, top: 25, inclusive: false, keep: "" };
const setups: { name: string; checkout: string; toml: string }[] = [];

function usage(exitCode = 0): never {
  console.log(`bun bench/instructions.ts [options] NAME=TOML [NAME@CHECKOUT=TOML ...]
  --warm N           pgbench -t per client before counting starts (default 700)
  --transactions N   pgbench -t per client counted (default 300; 10 clients)
  --scale N          pgbench scale of the database helios_cache_bench_tpcb (default 10; other scales get their own database)
  --top N            functions listed per setup and per difference (default 25)
  --inclusive        functions' inclusive cost (what they and their callees ran) instead of their own
  --keep DIR         keep each setup's callgrind dumps and jitdump in DIR/NAME
  NAME=TOML          a setup: its name and extra proxy config (\\n for newlines; empty for none); the first is the base
  NAME@CHECKOUT=TOML the proxy from another checkout of HeliosProxy (its bench/lib.ts starts it, and must take \`prefix\`)`);
  process.exit(exitCode);
}

// Setups are the arguments that are neither flags nor a flag's value.
const WITH_VALUE = new Set(["--warm", "--transactions", "--scale", "--top", "--keep"]);
const argv = process.argv.slice(2);
const isSetup = (a: string, i: number) => !a.startsWith("-") && !WITH_VALUE.has(argv[i - 1] ?? "");
parseFlags(argv.filter((a, i) => !isSetup(a, i)), usage, {
  "--warm": (v) => (o.warm = Number(v())),
  "--transactions": (v) => (o.transactions = Number(v())),
  "--scale": (v) => (o.scale = Number(v())),
  "--top": (v) => (o.top = Number(v())),
  "--inclusive": () => (o.inclusive = true),
  "--keep": (v) => (o.keep = v()),
});
for (const a of argv.filter(isSetup)) {
  const m = /^([\w.-]+)(?:@([^=]+))?=(.*)$/s.exec(a);
  if (m === null) {
    console.error(`not a setup (NAME=TOML or NAME@CHECKOUT=TOML, NAME of letters, digits, '.', '-', '_'): ${a}`);
    usage(2);
  }
  if (setups.some((s) => s.name === m[1])) {
    console.error(`setup ${m[1]} given twice`);
    usage(2);
  }
  setups.push({ name: m[1]!, checkout: m[2] ?? "", toml: m[3]!.replaceAll("\\n", "\n") });
}
if (setups.length === 0) usage(2);
for (const tool of ["valgrind", "callgrind_control", "callgrind_annotate"]) {
  if (Bun.which(tool) === null) {
    console.error(`${tool} is not installed (Debian: apt-get install valgrind)`);
    process.exit(1);
  }
}

/** Where a function's compiled code lay, in the order JSC loaded it. */
interface JitCode {
  start: number;
  end: number;
  name: string;
}

/** JIT_CODE_LOAD records of every jitdump in `dir`, names without the tier prefix and the `#hash` suffix. */
function readJitdumps(dir: string): JitCode[] {
  const code: JitCode[] = [];
  for (const f of readdirSync(dir)) {
    const b = readFileSync(join(dir, f));
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    // Header size at 8; each record: id, total size, timestamp, then for a load pid, tid, vma, code address, size, index, name.
    for (let at = dv.getUint32(8, true); at + 16 <= b.length; ) {
      const size = dv.getUint32(at + 4, true);
      if (size === 0) break;
      if (dv.getUint32(at, true) === 0) {
        const start = Number(dv.getBigUint64(at + 32, true));
        const name = b.toString("utf8", at + 56, b.indexOf(0, at + 56));
        code.push({ start, end: start + Number(dv.getBigUint64(at + 40, true)), name: name.replace(/^JSC-(FTL|DFG|Baseline|LLInt)[^:]*: /, "").replace(/#[A-Za-z0-9$_]{6}$/, "") });
      }
      at += size;
    }
  }
  return code;
}

/** Cost per function of one callgrind dump (self, or inclusive), JIT code named from `jit`, and the dump's total. */
function functionCosts(dump: string, jit: JitCode[]): { total: number; costs: Map<string, number> } {
  const r = Bun.spawnSync(["callgrind_annotate", "--threshold=100", ...(o.inclusive ? ["--inclusive=yes"] : []), dump], { stdout: "pipe", stderr: "pipe", maxBuffer: 1 << 30 });
  if (r.exitCode !== 0) throw new Error(`callgrind_annotate ${dump} failed: ${r.stderr.toString().trim()}`);
  let total = NaN;
  const rows: { cost: number; file: string; fn: string; object: string }[] = [];
  // "  1,234 ( 0.56%)  file:function [object]" (the object left out on a function's inlined parts).
  for (const line of r.stdout.toString().split("\n")) {
    const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[(.*)\])?$/.exec(line);
    if (m === null) continue;
    const cost = Number(m[1]!.replaceAll(",", ""));
    if (m[2] === "PROGRAM TOTALS") total = cost;
    else rows.push({ cost, file: m[2]!.slice(0, m[2]!.indexOf(":")), fn: m[2]!.slice(m[2]!.indexOf(":") + 1), object: m[3] ?? "" });
  }
  // Each address of JIT code gets the function last loaded over it: walk the loads in order over the sorted addresses.
  const unnamed = (r: (typeof rows)[number]) => r.file === "???" && r.object === "???" && /^0x[0-9a-f]+$/.test(r.fn);
  const addresses = [...new Set(rows.filter(unnamed).map((r) => parseInt(r.fn, 16)))].sort((a, b) => a - b);
  const jitName = new Map<number, string>();
  for (const c of jit) {
    let lo = 0;
    for (let hi = addresses.length; lo < hi; ) {
      const mid = (lo + hi) >> 1;
      if (addresses[mid]! < c.start) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < addresses.length && addresses[i]! < c.end; i++) jitName.set(addresses[i]!, c.name);
  }
  const costs = new Map<string, number>();
  for (const row of rows) {
    const hex = `0x${row.fn.replace(/^0x0*/, "")}`;
    let name = row.fn;
    if (unnamed(row)) name = jitName.get(parseInt(row.fn, 16)) ?? `JIT code ${hex} (not in the jitdump)`;
    else if (row.file === "???" && /^0x[0-9a-f]+$/.test(row.fn)) name = /^bun(\.exe)?$/.test(basename(row.object)) ? `bun native ${hex}` : `${basename(row.object)} ${hex}`;
    // Self costs of a function's copies (tiers, inlined parts) add up; inclusive ones would count a caller's share twice.
    costs.set(name, o.inclusive ? Math.max(costs.get(name) ?? 0, row.cost) : (costs.get(name) ?? 0) + row.cost);
  }
  return { total, costs };
}

interface Measured {
  transactions: number;
  total: number;
  costs: Map<string, number>;
}

/** Run one setup's proxy under callgrind: warm it, count a measured pgbench run on its main thread. */
async function measure(s: (typeof setups)[number], dir: string, db: string): Promise<Measured> {
  const jitdumps = join(dir, "jitdump");
  mkdirSync(jitdumps, { recursive: true });
  const out = join(dir, "callgrind.out");
  const vgdb = join(dir, "vgdb");
  const start: typeof startHelios = s.checkout === "" ? startHelios : (await import(`${s.checkout}/bench/lib.ts`)).startHelios;
  const proxy = await start({
    maxConnections: 20,
    toml: s.toml,
    prefix: ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no", "--separate-threads=yes", `--callgrind-out-file=${out}`, `--vgdb-prefix=${vgdb}`],
    startTimeoutMs: 180_000,
    env: { BUN_JSC_useJITDump: "1", BUN_JSC_jitDumpDirectory: jitdumps },
  });
  const control = (...args: string[]) => {
    const r = sh(["callgrind_control", `--vgdb-prefix=${vgdb}`, ...args, String(proxy.pid)]);
    // callgrind_control exits 0 even when it found no callgrind at that pid.
    if (r.code !== 0 || /^Error/m.test(r.out + r.err)) {
      const hint = s.checkout === "" ? "" : ` (is ${s.checkout}/bench/lib.ts too old to start it under valgrind: no \`prefix\` option?)`;
      throw new Error(`setup ${s.name}: callgrind_control ${args.join(" ")} failed${hint}: ${(r.out + r.err).trim()}`);
    }
  };
  const pgbench = async (perClient: number) => {
    const r = await runPgbench(["-n", "-c", "10", "-j", "2", "-t", String(perClient)], proxy.port, db);
    if (r.exitCode !== 0 || r.failed > 0) throw new Error(`pgbench failed against ${s.name}: ${r.firstError}`);
    return r.transactions;
  };
  let transactions = 0;
  try {
    control("--stat"); // under callgrind at all, before a long warm-up
    await pgbench(o.warm);
    control("--instr=on");
    transactions = await pgbench(o.transactions);
    control("--dump");
    control("--instr=off");
  } finally {
    await proxy.stop();
  }
  // With --separate-threads, the dump is one file per thread: <out>.<dump number>-<thread>; thread 01 is the main thread.
  const { total, costs } = functionCosts(`${out}.1-01`, readJitdumps(jitdumps));
  return { transactions, total, costs };
}

const db = o.scale === 10 ? "helios_cache_bench_tpcb" : `helios_cache_bench_tpcb_s${o.scale}`;
ensurePgbenchDatabase(db, o.scale);
const dir = o.keep || mkdtempSync(join(tmpdir(), "helios-instructions-"));
const results: Measured[] = [];
try {
  for (const s of setups) {
    const at = join(dir, s.name);
    rmSync(at, { recursive: true, force: true });
    console.log(`${s.name}: proxy${s.checkout === "" ? "" : ` of ${s.checkout}`} under callgrind, pgbench tpcb -c 10 -t ${o.warm} to warm up, then -t ${o.transactions} counted ...`);
    results.push(await measure(s, at, db));
  }
} finally {
  if (!o.keep) rmSync(dir, { recursive: true, force: true });
}

const kind = o.inclusive ? "inclusive" : "self";
const perTx = (m: Measured, n: number) => n / m.transactions;
const signed = (x: number) => (x > 0 ? "+" : "") + fmt(x);
console.log(`\nMain-thread instructions per transaction (pgbench tpcb -c 10 -j 2, scale ${o.scale}, ${o.transactions} per client counted after ${o.warm} to warm up):`);
for (let i = 0; i < setups.length; i++) console.log(`  ${fmt(perTx(results[i]!, results[i]!.total)).padStart(9)}  ${setups[i]!.name} (${fmt(results[i]!.transactions)} transactions)`);
for (let i = 0; i < setups.length; i++) {
  const m = results[i]!;
  console.log(`\n${setups[i]!.name}: top functions (${kind}), instructions per transaction:`);
  for (const [fn, n] of [...m.costs].sort((a, b) => b[1] - a[1]).slice(0, o.top)) console.log(`  ${fmt(perTx(m, n)).padStart(9)}  ${fn}`);
}
const base = results[0]!;
for (let i = 1; i < setups.length; i++) {
  const m = results[i]!;
  const diffs = [...new Set([...base.costs.keys(), ...m.costs.keys()])].map((fn) => {
    const a = perTx(base, base.costs.get(fn) ?? 0);
    const b = perTx(m, m.costs.get(fn) ?? 0);
    return { fn, a, b, d: b - a };
  });
  // The largest differences either way, then in order from the largest increase to the largest decrease.
  const shown = diffs.sort((x, y) => Math.abs(y.d) - Math.abs(x.d)).slice(0, o.top).sort((x, y) => y.d - x.d);
  console.log(`\n${setups[i]!.name} - ${setups[0]!.name}: total ${signed(perTx(m, m.total) - perTx(base, base.total))} instructions per transaction; largest differences per function (${kind}):`);
  for (const x of shown) console.log(`  ${signed(x.d).padStart(9)}  ${fmt(x.a).padStart(9)} -> ${fmt(x.b).padStart(9)}  ${x.fn}`);
}
