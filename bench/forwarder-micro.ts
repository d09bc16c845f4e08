// Nanoseconds per request through RequestForwarder.forward alone (stand-in session and server, no sockets): the request path's own cost, steadier than process CPU on a busy machine.
//
//   bun bench/forwarder-micro.ts [--requests N] [--rounds N] [--replay]   (--replay: with the ha-tr tap, a ReadyForQuery fed to its journal after each request)

import { RequestForwarder } from "../src/client/forwarder.ts";
import { Fe } from "../src/protocol/codes.ts";
import { build } from "../src/protocol/writer.ts";
import { QueryClassifier } from "../src/sql/classify.ts";
import { QueryShapeCache } from "../src/sql/fingerprint.ts";
import { JournalTap } from "../src/modules/transaction-replay/session-tap.ts";
import { DEFAULT_REPLAY_SETTINGS, ReplayRegistry } from "../src/cluster/ha/replay-registry.ts";
import { readyForQuery } from "../src/protocol/messages.ts";
import { parseFlags } from "./lib.ts";

const o = { requests: 300_000, rounds: 7, replay: false };
parseFlags(process.argv.slice(2), (code) => process.exit(code), {
  "--requests": (v) => (o.requests = Number(v())),
  "--rounds": (v) => (o.rounds = Number(v())),
  "--replay": () => (o.replay = true),
});

let written = 0;
const server = {
  endpoint: { name: "n1" },
  txStatus: 73,
  owed: 0,
  errors: 0,
  dirty: false,
  preparedUncertain: false,
  prepared: new Map<string, boolean>(),
  queue: { pushed: 0, shifted: 0 },
  stats: { bytesIn: 0, clientParseCount: 0, bindCount: 0 },
  out: { write: (_b: Uint8Array, from = 0, to = _b.length) => void (written += to - from) },
  expect() {
    this.queue.pushed++;
  },
};
const ctx = {
  hooks: null,
  commits: null,
  splitting: false,
  config: { limits: { max_message_bytes: 1 << 30 }, pool: { prepared_statements_per_server: 100, reset_query: "DISCARD ALL", reset_query_always: false } },
  classifier: new QueryClassifier([]),
  shapes: new QueryShapeCache(),
  statelessFunctions: new Set<string>(),
  cluster: { primary: () => ({ name: "n1" }), epoch: 1 },
  buffer: { active: false },
};
const session = {
  ctx,
  mode: "transaction",
  server,
  tap: null as JournalTap | null,
  out: { write: () => true },
  forwarder: null as unknown,
  pid: 1,
  user: "u",
  database: "d",
  txStatus: 73,
  pinned: false,
  requestStartedAt: 0,
  sessionState: null,
  acquireServer: () => true,
  moduleView: () => ({}),
  fatal(r: Uint8Array) {
    throw new Error(`fatal ${r.length}`);
  },
  close() {},
};
const fw = new RequestForwarder(session as never);
session.forwarder = fw;
if (o.replay) session.tap = new JournalTap(session as never, new ReplayRegistry(DEFAULT_REPLAY_SETTINGS));
const ready = readyForQuery(73);

const simple = build((w) => w.msg(Fe.Query).cstr("SELECT abalance FROM pgbench_accounts WHERE aid = 4242;").end());
const prepare = build((w) => w.msg(Fe.Parse).cstr("P0_1").cstr("SELECT abalance FROM pgbench_accounts WHERE aid = $1;").int16(1).int32(23).end());
const prepared = build((w) => {
  w.msg(Fe.Bind).cstr("").cstr("P0_1").int16(1).int16(0).int16(1).int32(4).str("4242").int16(1).int16(1).end();
  w.msg(Fe.Execute).cstr("").int32(0).end();
  w.msg(Fe.Sync).end();
});
fw.forward(prepare, 0, prepare.length);

function run(msg: Uint8Array): number {
  let best = Infinity;
  for (let r = 0; r < o.rounds; r++) {
    const t0 = Bun.nanoseconds();
    for (let i = 0; i < o.requests; i++) {
      fw.forward(msg, 0, msg.length);
      session.tap?.replies.write(ready);
    }
    best = Math.min(best, (Bun.nanoseconds() - t0) / o.requests);
  }
  return best;
}
console.log(`simple Query            ${run(simple).toFixed(1)} ns/request (best of ${o.rounds} x ${o.requests})`);
console.log(`Bind/Execute/Sync       ${run(prepared).toFixed(1)} ns/request`);
if (written === 0) throw new Error("nothing forwarded");
if (session.tap !== null) console.log(`journal entries left: ${session.tap.journal.entries.length}, bytes ${session.tap.journal.bytes}`);
