// Tracing through a real proxy to a local OTLP/HTTP receiver: spans parented to the client's traceparent, SQLSTATE errors as error status, a dead collector costs clients nothing.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { pgClient, pgjs, rejection } from "../support/clients.ts";
import { waitFor } from "../support/pg-instance.ts";
import { freePort, startProxy, type RunningProxy } from "../support/proxy.ts";
import { hex, otlpReceiver, traceparent, type Span } from "../support/otlp.ts";

type Json = Record<string, any>;

const receiver = otlpReceiver();
let proxy: RunningProxy;

beforeAll(async () => {
  // Roots are never sampled (ratio 0): only requests carrying a sampled parent make spans.
  proxy = await startProxy({
    toml: `[tracing]\nendpoint = "${receiver.url}"\nservice_name = "proxy-under-test"\nsample_ratio = 0.0\nbatch_delay_ms = 20\n`,
  });
});

afterAll(async () => {
  await proxy?.stop();
  receiver.stop();
});

async function spansOf(traceId: string, n: number): Promise<Span[]> {
  await waitFor(`${n} span(s) of trace ${traceId}`, () => receiver.spans.filter((x) => x.traceId === traceId).length >= n);
  return receiver.spans.filter((x) => x.traceId === traceId);
}

test("a sqlcommenter traceparent in the statement parents the request span; attributes carry the normalised text, node, rows and timings; a pool-wait child hangs under it", async () => {
  const c = await pgClient(proxy.port);
  const [traceId, parent] = [hex(16), hex(8)];
  const r = await c.query(`SELECT n, 'secret-literal' AS s FROM generate_series(1, 42) n WHERE n > 0 /*traceparent='${traceparent(traceId, parent)}',route='x'*/`);
  expect(r.rowCount).toBe(42);
  await c.end();
  const spans = await spansOf(traceId, 2);
  const req = spans.find((s) => s.name === "SELECT test")!;
  expect(req?.name).toBe("SELECT test");
  expect(req.parentSpanId).toBe(parent);
  expect(req.attrs["db.system"]).toBe("postgresql");
  expect(req.attrs["db.system.name"]).toBe("postgresql");
  expect(req.attrs["db.namespace"]).toBe("test");
  expect(req.attrs["db.operation.name"]).toBe("SELECT");
  const text = String(req.attrs["db.query.text"]);
  expect(text).toStartWith("SELECT n, $");
  expect(text).not.toContain("secret-literal");
  expect(text).not.toContain("traceparent");
  expect(req.attrs["db.response.returned_rows"]).toBe(42);
  expect(req.attrs["heliosproxy.node"]).toBe("node1");
  expect(req.attrs["heliosproxy.protocol"]).toBe("simple");
  expect(Number(req.attrs["heliosproxy.pool_wait_ms"])).toBeGreaterThanOrEqual(0);
  expect(Number(req.attrs["heliosproxy.server_ms"])).toBeGreaterThan(0);
  expect(req.attrs["service.name"]).toBe("proxy-under-test");
  expect(req.status.code ?? 0).not.toBe(2);
  const wait = spans.find((s) => s.name === "pool wait")!;
  expect(wait.parentSpanId).toBe(req.spanId);
});

test("a traceparent given at login (options -c traceparent=...) parents every request of the session; the server never sees it as a setting", async () => {
  const [traceId, parent] = [hex(16), hex(8)];
  const c = await pgClient(proxy.port, { options: `-c traceparent=${traceparent(traceId, parent)}` } as object);
  // Extended protocol: one span per run up to Sync.
  const r = await c.query("SELECT $1::int + 1 AS v", [41]);
  expect(r.rows[0].v).toBe(42);
  expect((await c.query("SELECT current_setting('traceparent', true) AS v")).rows[0].v).toBeNull();
  await c.end();
  const spans = (await spansOf(traceId, 4)).filter((s) => s.name !== "pool wait");
  expect(spans.length).toBe(2);
  for (const s of spans) expect(s.parentSpanId).toBe(parent);
  const ext = spans.find((s) => s.attrs["heliosproxy.protocol"] === "extended")!;
  expect(ext.attrs["db.query.text"]).toBe("SELECT $1::int + $2 AS v");
});

test("a startup parameter traceparent works too, and the statement's own comment wins over it", async () => {
  const [traceId, parent] = [hex(16), hex(8)];
  const [traceId2, parent2] = [hex(16), hex(8)];
  const sql = pgjs(proxy.port, { connection: { traceparent: traceparent(traceId, parent) } as Record<string, string> });
  expect((await sql`SELECT 7 AS v`)[0]!.v).toBe(7);
  await sql.unsafe(`/*traceparent='${traceparent(traceId2, parent2)}'*/ SELECT 8`);
  await sql.end();
  const a = (await spansOf(traceId, 1)).filter((s) => s.name !== "pool wait");
  expect(a.every((s) => s.parentSpanId === parent)).toBe(true);
  const b = (await spansOf(traceId2, 1)).find((s) => s.name !== "pool wait")!;
  expect(b.parentSpanId).toBe(parent2);
});

test("a request failing with a SQLSTATE ends its span with error status and the code as db.response.status_code", async () => {
  const c = await pgClient(proxy.port);
  const [traceId, parent] = [hex(16), hex(8)];
  const e = await rejection(c.query(`/*traceparent='${traceparent(traceId, parent)}'*/ SELECT 1/0`));
  expect(e.code).toBe("22012");
  await c.end();
  const req = (await spansOf(traceId, 1)).find((s) => s.name !== "pool wait")!;
  expect(req.status.code).toBe(2); // STATUS_CODE_ERROR
  expect(req.status.message).toBe("SQLSTATE 22012");
  expect(req.attrs["db.response.status_code"]).toBe("22012");
  expect(req.attrs["error.type"]).toBe("22012");
});

test("sampling is parent-based: a root request (ratio 0) and an unsampled parent make no span", async () => {
  const c = await pgClient(proxy.port);
  const [traceId, parent] = [hex(16), hex(8)];
  await c.query(`SELECT 'unsampled' /*traceparent='${traceparent(traceId, parent, false)}'*/`);
  await c.query("SELECT 'root request'");
  // A sampled request after them: once it is in, the batch that would hold the others has gone too.
  const [marker, markerParent] = [hex(16), hex(8)];
  await c.query(`SELECT 'marker' /*traceparent='${traceparent(marker, markerParent)}'*/`);
  await c.end();
  await spansOf(marker, 1);
  expect(receiver.spans.filter((s) => s.traceId === traceId).length).toBe(0);
  // Every span received is a child of a client's span or of a request span: no roots.
  expect(receiver.spans.filter((s) => s.parentSpanId === "").length).toBe(0);
  const shown = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/tracing`)).json()) as Json;
  expect(shown.spans_exported).toBeGreaterThanOrEqual(shown.spans_recorded - 1);
  expect(shown.export_failures).toBe(0);
});

test("a collector that accepts connections and never answers, and one that is not there: every query answers, none waits for an export", async () => {
  // Accepts and holds every connection without a byte back.
  const held: { end(): void }[] = [];
  const hang = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void held.push(s), data() {} } });
  const deadPort = freePort();
  const EXPORT_TIMEOUT = 3000;
  for (const endpoint of [`http://127.0.0.1:${hang.port}/v1/traces`, `http://127.0.0.1:${deadPort}/v1/traces`]) {
    const p = await startProxy({
      toml: `[tracing]\nendpoint = "${endpoint}"\nbatch_delay_ms = 10\nmax_queue_size = 64\nmax_batch_size = 16\nexport_timeout_ms = ${EXPORT_TIMEOUT}\n`,
    });
    try {
      const clients = await Promise.all(Array.from({ length: 4 }, () => pgClient(p.port)));
      let worst = 0;
      let answered = 0;
      await Promise.all(
        clients.map(async (c, i) => {
          for (let k = 0; k < 150; k++) {
            const t0 = performance.now();
            const r = await c.query("SELECT $1::int AS v", [i * 1000 + k]);
            worst = Math.max(worst, performance.now() - t0);
            if (r.rows[0].v === i * 1000 + k) answered++;
          }
        }),
      );
      expect(answered).toBe(600);
      for (const c of clients) {
        expect(c.asyncErrors).toEqual([]);
        await c.end();
      }
      // A query held behind an export would take the export timeout; none comes near it.
      expect(worst).toBeLessThan(EXPORT_TIMEOUT / 2);
      const shown: Json = {};
      await waitFor("a failed export counted", async () => {
        Object.assign(shown, await (await fetch(`http://127.0.0.1:${p.adminPort}/tracing`)).json());
        return shown.export_failures > 0;
      }, EXPORT_TIMEOUT * 4);
      expect(shown.spans_recorded).toBe(600);
      expect(shown.spans_exported).toBe(0);
      expect(p.output()).toContain(`tracing: export to ${endpoint} failed`);
    } finally {
      await p.stop();
    }
  }
  hang.stop(true);
  for (const s of held) s.end();
}, 120_000);

test("a password in a traced statement is masked in db.query.text", async () => {
  const c = await pgClient(proxy.port);
  const [traceId, parent] = [hex(16), hex(8)];
  await c.query("BEGIN");
  await c.query(`CREATE ROLE helios_trace_tmp PASSWORD 'Pw-trace-secret' /*traceparent='${traceparent(traceId, parent)}'*/`);
  await c.query("ROLLBACK");
  await c.end();
  const req = (await spansOf(traceId, 1)).find((s) => s.name.startsWith("CREATE"))!;
  expect(String(req.attrs["db.query.text"])).toContain("PASSWORD '***'");
  expect(JSON.stringify(req.attrs)).not.toContain("Pw-trace-secret");
});

test("a request the query cache answers gets a span marked heliosproxy.answered_by, with a cache-lookup child, and counts in query analytics (answered)", async () => {
  const p = await startProxy({
    toml: `[auth]\nmethod = "trust"\n[tracing]\nendpoint = "${receiver.url}"\nsample_ratio = 0.0\nbatch_delay_ms = 20\n[query_cache]\n[query_analytics]\n`,
  });
  const c = await pgClient(p.port);
  try {
    await c.query("CREATE TABLE IF NOT EXISTS traced_cache (id int PRIMARY KEY, v text); INSERT INTO traced_cache VALUES (1, 'one') ON CONFLICT DO NOTHING");
    const cacheHits = async () => ((await (await fetch(`http://127.0.0.1:${p.adminPort}/cache`)).json()) as Json).hits as number;
    // Read until the cache answers (it learns the table from the catalog first), each read in a trace of its own.
    const traced = await waitFor("a cache hit", async () => {
      const traceId = hex(16);
      const before = await cacheHits();
      const r = await c.query(`SELECT v FROM traced_cache WHERE id = 1 /*traceparent='${traceparent(traceId, hex(8))}'*/`);
      expect(r.rows).toEqual([{ v: "one" }]);
      return (await cacheHits()) > before ? traceId : undefined;
    });
    const spans = await spansOf(traced!, 2);
    const span = spans.find((s) => s.name.startsWith("SELECT"));
    expect(span!.attrs["heliosproxy.answered_by"]).toBe("query_cache");
    // Its one step is the cache lookup that hit: a child covering the request, no pool wait.
    const lookup = spans.filter((s) => s !== span);
    expect(lookup.map((s) => [s.name, s.parentSpanId, s.attrs["heliosproxy.hit"]])).toEqual([["query_cache lookup", span!.spanId, true]]);
    expect(span!.attrs["heliosproxy.node"]).toBe("");
    expect(span!.attrs["db.response.returned_rows"]).toBe(1);
    expect(span!.status.code ?? 0).not.toBe(2);
    const hits = await cacheHits();
    const rows = ((await (await fetch(`http://127.0.0.1:${p.adminPort}/queries?limit=100`)).json()) as Json).queries as Json[];
    const entry = rows.find((q) => String(q.query).includes("traced_cache") && String(q.query).startsWith("SELECT"))!;
    expect(entry.answered).toBe(hits);
    expect(entry.calls).toBeGreaterThan(entry.answered);
    expect(entry.rows).toBe(entry.calls);
  } finally {
    await c.query("DROP TABLE IF EXISTS traced_cache");
    await c.end();
    await p.stop();
  }
});
