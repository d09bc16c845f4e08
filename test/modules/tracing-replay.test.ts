// Replay spans through a real proxy (ha-tr retry_conflicts) to a local OTLP receiver: a deadlock victim's retry is a "replay" span in the session's trace covering the replayed requests; a refused retry carries its SQLSTATE as error status.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type pg from "pg";
import { PG_PORT, pgClient } from "../support/clients.ts";
import { hex, otlpReceiver, traceparent, type Span } from "../support/otlp.ts";
import { waitFor } from "../support/pg-instance.ts";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

const receiver = otlpReceiver();
let admin: pg.Client;
let proxy: RunningProxy;

beforeAll(async () => {
  admin = await pgClient(PG_PORT);
  await admin.query("DROP TABLE IF EXISTS trace_replay_t; CREATE TABLE trace_replay_t (id int PRIMARY KEY, v int)");
  // Only requests with a sampled parent make spans (ratio 0 for roots). Tracing starts before the module that journals.
  proxy = await startProxy({
    mode: "transaction",
    toml: `[tracing]\nendpoint = "${receiver.url}"\nsample_ratio = 0.0\nbatch_delay_ms = 20\n[transaction_replay]\nenabled = true\nretry_conflicts = true\n`,
  });
});

afterAll(async () => {
  await proxy?.stop();
  receiver.stop();
  await admin.query("DROP TABLE IF EXISTS trace_replay_t");
  await admin.end();
});

/** A client of the proxy whose requests are traced under `traceId`, parented to `parent` (traceparent given at login), with `deadlock_timeout` set. */
async function traced(traceId: string, parent: string, deadlockTimeout: string): Promise<pg.Client> {
  const c = await pgClient(proxy.port, { options: `-c traceparent=${traceparent(traceId, parent)}` } as object);
  await c.query(`SET deadlock_timeout = '${deadlockTimeout}'`);
  return c;
}

async function spansOf(traceId: string, done: (spans: Span[]) => boolean): Promise<Span[]> {
  const of = () => receiver.spans.filter((s) => s.traceId === traceId);
  await waitFor(`spans of trace ${traceId}`, () => done(of()));
  return of();
}

test("a deadlock victim's transaction, run again by the proxy: one replay span in its session's trace, covering the replayed requests", async () => {
  await admin.query("TRUNCATE trace_replay_t; INSERT INTO trace_replay_t VALUES (1, 0), (2, 0)");
  const [ta, tb, pb] = [hex(16), hex(16), hex(8)];
  // b finds the deadlock (and is its victim): a waits far longer before checking.
  const a = await traced(ta, hex(8), "10s");
  const b = await traced(tb, pb, "100ms");
  try {
    for (const c of [a, b]) await c.query("BEGIN");
    await a.query("UPDATE trace_replay_t SET v = v + 1 WHERE id = 1");
    await b.query("UPDATE trace_replay_t SET v = v + 10 WHERE id = 2");
    // a commits as soon as it has row 2, so b's second run can take it.
    const first = a.query("UPDATE trace_replay_t SET v = v + 1 WHERE id = 2").then(() => a.query("COMMIT"));
    await Bun.sleep(50);
    expect((await b.query("UPDATE trace_replay_t SET v = v + 10 WHERE id = 1")).rowCount).toBe(1);
    await b.query("COMMIT");
    await first;
  } finally {
    await a.end();
    await b.end();
  }
  expect((await admin.query("SELECT v FROM trace_replay_t ORDER BY id")).rows.map((r) => r.v)).toEqual([11, 11]);

  const spans = await spansOf(tb, (s) => s.some((x) => x.name === "replay") && s.some((x) => x.name === "COMMIT test"));
  const replays = spans.filter((s) => s.name === "replay");
  expect(replays).toHaveLength(1);
  const replay = replays[0]!;
  // In the application's trace, beside the session's request spans.
  expect(replay.parentSpanId).toBe(pb);
  expect(spans.find((s) => s.name === "COMMIT test")!.parentSpanId).toBe(pb);
  expect(replay.attrs).toMatchObject({
    "heliosproxy.replay.outcome": "retried",
    "heliosproxy.replay.reason": "deadlock or serialization failure",
    "heliosproxy.replay.from_node": "node1",
    "heliosproxy.replay.to_node": "node1",
    "db.namespace": "test",
    "db.user": "postgres",
  });
  expect(Number(replay.attrs["heliosproxy.replay.requests"])).toBeGreaterThanOrEqual(2);
  expect(Number(replay.attrs["heliosproxy.replay.in_flight"])).toBeGreaterThanOrEqual(1);
  expect(replay.status.code ?? 0).not.toBe(2);
  // The second run's two UPDATEs (their own request spans) lie inside the replay span (1 ms for rounding).
  const inside = spans.filter((s) => s.name === "UPDATE test" && s.startMs >= replay.startMs - 1 && s.endMs <= replay.endMs + 1);
  expect(inside.length).toBeGreaterThanOrEqual(2);
  expect(inside.every((s) => (s.status.code ?? 0) !== 2)).toBe(true);
  // a's trace has requests and no replay: the recovery is b's alone.
  expect((await spansOf(ta, (s) => s.some((x) => x.name === "COMMIT test"))).filter((s) => s.name === "replay")).toEqual([]);
});

test("a retry whose replies differ is refused: the replay span has error status with SQLSTATE 40001", async () => {
  await admin.query("TRUNCATE trace_replay_t; INSERT INTO trace_replay_t VALUES (1, 0), (2, 0), (3, 0)");
  const [tb, pb] = [hex(16), hex(8)];
  const a = await traced(hex(16), hex(8), "10s");
  const b = await traced(tb, pb, "100ms");
  try {
    for (const c of [a, b]) await c.query("BEGIN");
    // b saw row 3 before someone else changed it: run again, its first reply would differ.
    expect((await b.query("SELECT v FROM trace_replay_t WHERE id = 3")).rows[0].v).toBe(0);
    await admin.query("UPDATE trace_replay_t SET v = 5 WHERE id = 3");
    await a.query("UPDATE trace_replay_t SET v = v + 1 WHERE id = 1");
    await b.query("UPDATE trace_replay_t SET v = v + 10 WHERE id = 2");
    const first = a.query("UPDATE trace_replay_t SET v = v + 1 WHERE id = 2");
    await Bun.sleep(50);
    expect(await b.query("UPDATE trace_replay_t SET v = v + 10 WHERE id = 1").catch((x: { code: string }) => x.code)).toBe("40001");
    await b.query("ROLLBACK");
    await first;
    await a.query("COMMIT");
  } finally {
    await a.end();
    await b.end();
  }
  const spans = await spansOf(tb, (s) => s.some((x) => x.name === "replay") && s.some((x) => x.name === "ROLLBACK test"));
  const replays = spans.filter((s) => s.name === "replay");
  expect(replays).toHaveLength(1);
  expect(replays[0]!.parentSpanId).toBe(pb);
  expect(replays[0]!.attrs["heliosproxy.replay.outcome"]).toBe("refused");
  expect(replays[0]!.attrs["db.response.status_code"]).toBe("40001");
  expect(replays[0]!.status).toMatchObject({ code: 2, message: "SQLSTATE 40001" });
});
