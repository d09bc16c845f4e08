// Memory with many idle clients: log 10,000 clients in to HeliosProxy and to PgBouncer, keep them idle, report proxy RSS; writes docs/benchmarks.md.
//
//   bun bench/idle-clients.ts [--clients N] [--hold SECS] [--targets helios,pgbouncer] [--db NAME]
//                             [--helios-bin PATH] [--quick] [--no-doc] [--note TEXT]

import type { Socket } from "bun";
import {
  PG,
  type MachineInfo,
  type Proc,
  fmt,
  machineInfo,
  memKb,
  nofileLimits,
  parseFlags,
  sectionTitle,
  startHelios,
  startPgbouncer,
  updateDoc,
} from "./lib.ts";

type Target = "helios" | "pgbouncer";
const LABEL: Record<Target, string> = { helios: "HeliosProxy", pgbouncer: "PgBouncer" };
const TARGET_MB = 100;

interface Options {
  clients: number;
  hold: number;
  concurrency: number;
  targets: Target[];
  db: string;
  heliosBin?: string;
  doc: boolean;
  note: string;
  quick: boolean;
}

function usage(exitCode = 0): never {
  console.log("usage: bun bench/idle-clients.ts [--clients N (10000)] [--hold SECS (10; --quick 3)] [--concurrency N (200)] [--targets helios,pgbouncer] [--db NAME (postgres)] [--helios-bin PATH] [--quick] [--no-doc] [--note TEXT]");
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { clients: NaN, hold: NaN, concurrency: 200, targets: ["helios", "pgbouncer"], db: "postgres", doc: true, note: "", quick: false };
  parseFlags(argv, usage, {
    "--clients": (v) => (o.clients = Number(v())),
    "--hold": (v) => (o.hold = Number(v())),
    "--concurrency": (v) => (o.concurrency = Number(v())),
    "--targets": (v) => (o.targets = v().split(",") as Target[]),
    "--db": (v) => (o.db = v()),
    "--helios-bin": (v) => (o.heliosBin = v()),
    "--quick": () => (o.quick = true),
    "--no-doc": () => (o.doc = false),
    "--note": (v) => (o.note = v()),
  });
  if (Number.isNaN(o.clients)) o.clients = 10000;
  if (Number.isNaN(o.hold)) o.hold = o.quick ? 3 : 10;
  for (const t of o.targets) if (!(t in LABEL)) throw new Error(`unknown target ${t}`);
  return o;
}

// ---- a minimal PostgreSQL client: startup, trust login, then idle ---------------------------

interface Conn {
  buf: Uint8Array;
  len: number;
  ready: boolean;
  failed: string;
  settle: ((ok: boolean) => void) | null;
  onReply: (() => void) | null;
}

const enc = new TextEncoder();

function startupMessage(user: string, db: string): Uint8Array {
  const body = enc.encode(`user\0${user}\0database\0${db}\0application_name\0helios-idle-bench\0\0`);
  const m = new Uint8Array(8 + body.length);
  const v = new DataView(m.buffer);
  v.setInt32(0, m.length);
  v.setInt32(4, 196608); // protocol 3.0
  m.set(body, 8);
  return m;
}

function queryMessage(sql: string): Uint8Array {
  const body = enc.encode(sql + "\0");
  const m = new Uint8Array(5 + body.length);
  m[0] = 81; // 'Q'
  new DataView(m.buffer).setInt32(1, 4 + body.length);
  m.set(body, 5);
  return m;
}

const TERMINATE = new Uint8Array([88, 0, 0, 0, 4]); // 'X'

function onData(c: Conn, chunk: Uint8Array): void {
  if (c.len + chunk.length > c.buf.length) {
    const next = new Uint8Array(Math.max(c.buf.length * 2, c.len + chunk.length));
    next.set(c.buf.subarray(0, c.len));
    c.buf = next;
  }
  c.buf.set(chunk, c.len);
  c.len += chunk.length;
  let p = 0;
  const v = new DataView(c.buf.buffer, c.buf.byteOffset);
  while (c.len - p >= 5) {
    const type = c.buf[p]!;
    const len = v.getInt32(p + 1);
    if (c.len - p < 1 + len) break;
    if (type === 82 /* R */ && v.getInt32(p + 5) !== 0) fail(c, `server asked for authentication (code ${v.getInt32(p + 5)})`);
    else if (type === 69 /* E */) fail(c, new TextDecoder().decode(c.buf.subarray(p + 5, p + 1 + len)).replaceAll("\0", " ").trim());
    else if (type === 90 /* Z */) {
      if (!c.ready) {
        c.ready = true;
        c.settle?.(true);
        c.settle = null;
      } else {
        c.onReply?.();
        c.onReply = null;
      }
    }
    p += 1 + len;
  }
  c.buf.copyWithin(0, p, c.len);
  c.len -= p;
  if (c.buf.length > 4096 && c.len < 1024) c.buf = c.buf.slice(0, 1024);
}

function fail(c: Conn, why: string): void {
  if (!c.failed) c.failed = why;
  c.settle?.(false);
  c.settle = null;
}

function connect(port: number, db: string, timeoutMs = 30000): Promise<{ ok: boolean; sock: Socket<Conn> | null; conn: Conn }> {
  const conn: Conn = { buf: new Uint8Array(1024), len: 0, ready: false, failed: "", settle: null, onReply: null };
  return new Promise((resolve) => {
    let sock: Socket<Conn> | null = null;
    const timer = setTimeout(() => fail(conn, "login timed out"), timeoutMs);
    conn.settle = (ok) => {
      clearTimeout(timer);
      resolve({ ok, sock, conn });
    };
    Bun.connect<Conn>({
      hostname: "127.0.0.1",
      port,
      data: conn,
      socket: {
        open(s) {
          sock = s;
          s.write(startupMessage(PG.user, db));
        },
        data(s, chunk) {
          onData(s.data, chunk);
        },
        close(s) {
          fail(s.data, "connection closed");
        },
        error(s, e) {
          fail(s.data, e.message);
        },
        connectError(s, e) {
          fail(s.data, e.message);
        },
      },
    }).catch((e: Error) => fail(conn, e.message));
  });
}

/** Round trip of SELECT 1 on an already logged-in connection, ms. */
function roundTrip(sock: Socket<Conn>): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    sock.data.onReply = () => resolve(performance.now() - t0);
    sock.write(queryMessage("SELECT 1"));
  });
}

// ---- the measurement ----------------------------------------------------------------------

interface Measured {
  target: Target;
  baseKb: number;
  loadedKb: number;
  hwmKb: number;
  afterKb: number;
  connected: number;
  failed: number;
  firstFailure: string;
  loginSecs: number;
  selectMs: number;
  newLoginMs: number;
}

async function measureTarget(t: Target, o: Options): Promise<Measured> {
  const nofile = o.clients + 1000;
  const proc: Proc =
    t === "helios"
      ? await startHelios({ mode: "transaction", maxConnections: 20, maxClientConn: o.clients + 1000, nofile, bin: o.heliosBin })
      : await startPgbouncer({ poolSize: 20, maxClientConn: o.clients + 1000, nofile });
  try {
    // One login and query first, so the pool (and passthrough auth) is set up before the baseline.
    const warm = await connect(proc.port, o.db);
    if (!warm.ok) throw new Error(`${t}: cannot log in: ${warm.conn.failed}\n${proc.output().slice(-2000)}`);
    await roundTrip(warm.sock!);
    await Bun.sleep(1000);
    const baseKb = memKb(proc.pid).rss;

    const socks: Socket<Conn>[] = [];
    let failed = 0;
    let firstFailure = "";
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < o.clients) {
        next++;
        const r = await connect(proc.port, o.db);
        if (r.ok && r.sock) socks.push(r.sock);
        else {
          failed++;
          if (!firstFailure) firstFailure = r.conn.failed;
          r.sock?.end();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, o.clients) }, worker));
    const loginSecs = (performance.now() - t0) / 1000;
    console.log(`${LABEL[t]}: ${socks.length} clients logged in (${failed} failed) in ${loginSecs.toFixed(1)} s; idling ${o.hold} s`);
    await Bun.sleep(o.hold * 1000);
    const loaded = memKb(proc.pid);

    // The proxy still serves while holding them: a query on an idle client and a fresh login.
    const selectMs = socks.length ? await roundTrip(socks[socks.length >> 1]!) : NaN;
    const l0 = performance.now();
    const fresh = await connect(proc.port, o.db);
    const newLoginMs = fresh.ok ? performance.now() - l0 : NaN;
    fresh.sock?.end();

    for (const s of socks) {
      s.write(TERMINATE);
      s.end();
    }
    await Bun.sleep(3000);
    const afterKb = memKb(proc.pid).rss;
    warm.sock?.end();
    return {
      target: t,
      baseKb,
      loadedKb: loaded.rss,
      hwmKb: loaded.hwm,
      afterKb,
      connected: socks.length,
      failed,
      firstFailure,
      loginSecs,
      selectMs,
      newLoginMs,
    };
  } finally {
    await proc.stop();
  }
}

function report(rows: Measured[], o: Options, machine: MachineInfo, heliosDesc: string): string {
  const mb = (kb: number) => fmt(kb / 1024, 1);
  const L: string[] = [];
  L.push(...sectionTitle(`Idle clients: proxy memory with ${fmt(o.clients)} idle client connections`, "bench/idle-clients.ts", machine));
  L.push(
    `- Setup: ${fmt(o.clients)} TCP clients (one Bun process, ${o.concurrency} logins in flight) each send a StartupMessage ` +
      `(user ${PG.user}, database ${o.db}), finish the trust login, get ReadyForQuery and then stay idle for ${o.hold} s. ` +
      `RSS is VmRSS of the proxy process from /proc (baseline: after one client logged in and ran a query). ` +
      `HeliosProxy (${heliosDesc}): transaction mode, max_connections 20, no users (passthrough auth). PgBouncer: transaction mode, trust auth.`,
  );
  if (o.note) L.push(`- Note: ${o.note}`);
  L.push("");
  L.push("| proxy | RSS baseline (MB) | RSS with idle clients (MB) | per client (KB) | peak VmHWM (MB) | RSS after they left (MB) | logged in | failed | login time (s) | SELECT 1 on an idle client (ms) | new login while loaded (ms) |");
  L.push("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  for (const r of rows) {
    const per = r.connected ? ((r.loadedKb - r.baseKb) / r.connected).toFixed(1) : "n/a";
    L.push(
      `| ${LABEL[r.target]} | ${mb(r.baseKb)} | ${mb(r.loadedKb)} | ${per} | ${mb(r.hwmKb)} | ${mb(r.afterKb)} | ${fmt(r.connected)} | ${fmt(r.failed)} | ${r.loginSecs.toFixed(1)} | ${fmt(r.selectMs, 2)} | ${fmt(r.newLoginMs, 2)} |`,
    );
  }
  const failures = rows.filter((r) => r.firstFailure).map((r) => `- ${LABEL[r.target]}: first failure: \`${r.firstFailure.replaceAll("`", "'")}\``);
  if (failures.length) L.push("", ...failures);
  const h = rows.find((r) => r.target === "helios");
  if (h) {
    const all = h.connected === o.clients;
    const met = all && h.loadedKb / 1024 <= TARGET_MB;
    L.push("");
    L.push(`Target: ${fmt(o.clients)} idle clients <= ${TARGET_MB} MB RSS: HeliosProxy ${mb(h.loadedKb)} MB (${all ? "all logged in" : `only ${fmt(h.connected)} logged in`}) — ${met ? "met" : "**not met**"}.`);
  }
  return L.join("\n");
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  // This process holds every client socket: it needs more descriptors than the usual 1024.
  const need = o.clients + 200;
  const { soft, hard } = nofileLimits();
  if (soft < need) {
    if (process.env.HELIOS_BENCH_REEXEC || hard < need) {
      console.error(`open-files limit ${soft} (hard ${hard}) is below ${need}: raise it (ulimit -n ${need}) or use --clients`);
      process.exit(1);
    }
    const child = Bun.spawn(["/usr/bin/prlimit", `--nofile=${need}:${hard === Infinity ? "unlimited" : hard}`, "--", process.execPath, import.meta.path, ...process.argv.slice(2)], {
      stdio: ["inherit", "inherit", "inherit"],
      env: { ...process.env, HELIOS_BENCH_REEXEC: "1" },
    });
    process.exit(await child.exited);
  }
  const m = machineInfo();
  const rows: Measured[] = [];
  for (const t of o.targets) {
    console.log(`${LABEL[t]}: opening ${fmt(o.clients)} idle clients ...`);
    rows.push(await measureTarget(t, o));
  }
  const md = report(rows, o, m, o.heliosBin ? `binary ${o.heliosBin}` : "bun src/cli/main.ts");
  console.log("\n" + md);
  if (o.doc) {
    updateDoc("idle-clients", md);
    console.log("\nwritten to docs/benchmarks.md");
  }
}

await main();
