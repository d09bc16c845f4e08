// Where the proxy spends CPU under pgbench: perf samples of the proxy process with JavaScript functions named (JSC's jitdump turned into a perf map), per category and per function.
//
//   bun bench/profile.ts [--toml TEXT] [--workload tpcb|select] [--scale N] [--clients N] [--transactions N] [--rate TPS] [--top N] [--keep DIR]
//
// Needs `perf` (Debian: linux-perf) and may run as root only where perf_event_paranoid allows. Samples
// are CPU time (cpu-clock at 1999 Hz): µs per transaction = samples / transactions / 1999 * 1e6.
// With --rate both runs of an A/B comparison see the same load, so the per-transaction numbers
// compare (at full speed a slower setup also batches less, which costs the kernel more per request).

import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensurePgbenchDatabase, parseFlags, runPgbench, startHelios } from "./lib.ts";

const o = { toml: "", workload: "tpcb", scale: 10, clients: 10, transactions: 600, rate: 0, top: 25, keep: "" };

function usage(exitCode = 0): never {
  console.log(`bun bench/profile.ts [options]
  --toml TEXT        extra proxy config (\\n for newlines), e.g. '[query_cache]'
  --workload W       tpcb (default) or select (pgbench -S)
  --scale N          pgbench scale of the database helios_profile_s<N> (default 10)
  --clients N        pgbench -c (default 10)
  --transactions N   pgbench -t per client, measured after as many again to warm up (default 600)
  --rate TPS         pgbench -R: a fixed load, so that two setups compare (default: as fast as it goes)
  --top N            functions listed (default 25)
  --keep DIR         keep perf.data and the perf map in DIR`);
  process.exit(exitCode);
}

parseFlags(process.argv.slice(2), usage, {
  "--toml": (v) => (o.toml = v().replaceAll("\\n", "\n")),
  "--workload": (v) => (o.workload = v()),
  "--scale": (v) => (o.scale = Number(v())),
  "--clients": (v) => (o.clients = Number(v())),
  "--transactions": (v) => (o.transactions = Number(v())),
  "--rate": (v) => (o.rate = Number(v())),
  "--top": (v) => (o.top = Number(v())),
  "--keep": (v) => (o.keep = v()),
});
if (o.workload !== "tpcb" && o.workload !== "select") usage(2);
if (Bun.spawnSync(["perf", "--version"]).exitCode !== 0) throw new Error("perf is not installed (Debian: apt-get install linux-perf)");

const HZ = 1999;
const dir = o.keep || mkdtempSync(join(tmpdir(), "helios-profile-"));
const dumps = join(dir, "jitdump");
rmSync(dumps, { recursive: true, force: true });
mkdirSync(dumps, { recursive: true });
const db = `helios_profile_s${o.scale}`;
ensurePgbenchDatabase(db, o.scale);

// The proxy writes a jitdump of every function JSC compiles.
const proxy = await startHelios({ toml: o.toml, env: { BUN_JSC_useJITDump: "1", BUN_JSC_jitDumpDirectory: dumps } });
const args = ["-n", ...(o.workload === "select" ? ["-S"] : []), "-c", String(o.clients), "-t", String(o.transactions), ...(o.rate > 0 ? ["-R", String(o.rate)] : [])];
const data = join(dir, "perf.data");
let transactions = 0;
let tps = 0;
try {
  await runPgbench(args, proxy.port, db); // warm-up: the JIT has compiled the request path
  const perf = Bun.spawn(["perf", "record", "-k", "mono", "-F", String(HZ), "-g", "-o", data, "-p", String(proxy.pid)], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(300);
  const r = await runPgbench(args, proxy.port, db);
  perf.kill("SIGINT");
  await perf.exited;
  if (r.exitCode !== 0 || r.failed > 0) throw new Error(`pgbench failed: ${r.firstError}`);
  transactions = r.transactions;
  tps = r.tps;
} finally {
  await proxy.stop();
}

/** jitdump (JIT_CODE_LOAD records) -> /tmp/perf-<pid>.map, which perf reads to name JIT code. */
function writePerfMap(): string[] {
  const written: string[] = [];
  for (const f of readdirSync(dumps)) {
    const b = readFileSync(join(dumps, f));
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const pid = dv.getUint32(20, true);
    const lines: string[] = [];
    for (let p = dv.getUint32(8, true); p + 16 <= b.length; ) {
      const id = dv.getUint32(p, true);
      const size = dv.getUint32(p + 4, true);
      if (size === 0) break;
      if (id === 0) {
        const addr = dv.getBigUint64(p + 32, true);
        const len = dv.getBigUint64(p + 40, true);
        const nameAt = p + 56;
        const nameEnd = b.indexOf(0, nameAt);
        lines.push(`${addr.toString(16)} ${len.toString(16)} ${b.toString("utf8", nameAt, nameEnd)}`);
      }
      p += size;
    }
    const map = `/tmp/perf-${pid}.map`;
    writeFileSync(map, lines.join("\n") + "\n");
    written.push(map);
  }
  return written;
}
const maps = writePerfMap();

const script = Bun.spawnSync(["perf", "script", "-i", data, "--pid", String(proxy.pid), "-F", "comm,tid,ip,sym,dso"], { maxBuffer: 1 << 30 });

// Each sample: the thread, then its frames from the leaf outwards.
const clean = (s: string) => s.replace(/^JSC-(FTL|DFG|Baseline|LLInt)[^:]*: /, "").replace(/#[A-Za-z0-9$_]{6}$/, "");
const perThread = new Map<string, number>();
const category = new Map<string, number>();
const self = new Map<string, number>();
const firstJs = new Map<string, number>();
let main = 0;
const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
for (const sample of script.stdout.toString().split("\n\n")) {
  const lines = sample.trim().split("\n");
  if (lines.length === 0 || lines[0] === "") continue;
  // "<comm> <tid>" (the name may hold spaces), then one "<ip> <symbol>" line per frame.
  const head = /^(.*?)\s+(\d+)\s*$/.exec(lines[0]!.trim());
  if (head === null) continue;
  const tid = Number(head[2]);
  // Each frame: "<ip> <symbol> (<object>)".
  const parsed = lines.slice(1).map((l) => /^\S+\s+(.*?)\s+\((.*)\)$/.exec(l.trim()));
  const frames = parsed.map((m) => (m === null ? "[unknown]" : m[1]!));
  const objects = parsed.map((m) => (m === null ? "" : m[2]!));
  if (frames.length === 0) continue;
  const thread = tid === proxy.pid ? "main" : head[1]!.replace(/\d+$/, "");
  add(perThread, thread);
  if (tid !== proxy.pid) continue;
  main++;
  const leaf = frames[0]!;
  const object = objects[0]!;
  add(category, /^JSC-/.test(leaf) ? "JavaScript (JIT code)" : object.includes("kernel") ? "kernel" : /bun/.test(object) ? "runtime (bun: interpreter, GC, natives)" : `runtime (${object.split("/").pop()})`);
  add(self, clean(leaf));
  const js = frames.find((f) => /^JSC-/.test(f) && !/Thunk|InlineCache/.test(f));
  add(firstJs, js === undefined ? "(no JavaScript frame)" : clean(js));
}
if (!o.keep) for (const m of maps) rmSync(m, { force: true });
if (!o.keep) rmSync(dir, { recursive: true, force: true });

const us = (n: number) => ((n / transactions / HZ) * 1e6).toFixed(1);
const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, o.top);
console.log(`pgbench ${args.join(" ")}: ${transactions} transactions, ${tps.toFixed(0)} tps; proxy ${o.toml.trim() === "" ? "(no modules)" : JSON.stringify(o.toml.trim())}`);
console.log(`\nCPU µs per transaction by thread:`);
for (const [k, n] of top(perThread)) console.log(`  ${us(n).padStart(8)}  ${k}`);
console.log(`\nMain thread by kind:`);
for (const [k, n] of top(category)) console.log(`  ${us(n).padStart(8)}  ${k}`);
console.log(`\nMain thread, nearest JavaScript function on the stack (its own time and the natives it called):`);
for (const [k, n] of top(firstJs)) console.log(`  ${us(n).padStart(8)}  ${k}`);
console.log(`\nMain thread, leaf function:`);
for (const [k, n] of top(self)) console.log(`  ${us(n).padStart(8)}  ${k}`);
console.log(`\n(${main} main-thread samples at ${HZ} Hz)`);
