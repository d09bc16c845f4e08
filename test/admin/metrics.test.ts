// /metrics: sampled request latency per node and route, and errors by SQLSTATE.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";

let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy();
});

afterAll(async () => {
  await proxy.stop();
});

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
}

function value(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

test("request latency is a histogram per node and route, fed by sampled requests", async () => {
  // 200 requests: every server times one request in 16, so at least a handful are sampled.
  const script = Array.from({ length: 200 }, (_, i) => `select ${i};`).join("\n");
  const r = await psql(proxy.port, ["-Atq"], { input: script });
  expect(r.code).toBe(0);
  const text = await metrics();
  expect(text).toContain("# TYPE heliosproxy_query_duration_seconds histogram");
  const count = value(text, 'heliosproxy_query_duration_seconds_count{node="node1",route="primary"}');
  const inf = value(text, 'heliosproxy_query_duration_seconds_bucket{node="node1",route="primary",le="+Inf"}');
  const sum = value(text, 'heliosproxy_query_duration_seconds_sum{node="node1",route="primary"}');
  expect(count).toBeGreaterThanOrEqual(8);
  expect(inf).toBe(count);
  expect(sum).toBeGreaterThan(0);
  expect(sum / count).toBeLessThan(1);
});

test("errors relayed to clients are counted by SQLSTATE", async () => {
  const before = value(await metrics(), 'heliosproxy_errors_total{node="node1",database="test",sqlstate="22012"}');
  for (let i = 0; i < 3; i++) {
    const r = await psql(proxy.port, ["-Atc", "select 1/0"]);
    expect(r.stderr).toContain("division by zero");
  }
  const after = value(await metrics(), 'heliosproxy_errors_total{node="node1",database="test",sqlstate="22012"}');
  expect(after - (Number.isNaN(before) ? 0 : before)).toBe(3);
});
