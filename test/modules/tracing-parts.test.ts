// Tracing parts without a proxy: [tracing] config errors by key and line, traceparent parsing (header and sqlcommenter), operation names.

import { expect, test } from "bun:test";
import { ConfigError, moduleSettings, parseConfig } from "../../src/config/load.ts";
import { moduleFor } from "../../src/modules/index.ts";
import { DEFAULTS } from "../../src/modules/observability/config.ts";
import { parseTraceParent, traceParentInSql } from "../../src/modules/observability/traceparent.ts";
import { operationName } from "../../src/modules/observability/tracer.ts";
import { traceContextParam } from "../../src/sql/session-state.ts";

const BASE = `[proxy]\nlisten_address = "127.0.0.1:6432"\nadmin_address = "127.0.0.1:9090"\n[[nodes]]\nhost = "127.0.0.1"\n`;

/** The first issue of a config that must fail: "line|key|detail". */
function failure(section: string): string {
  try {
    parseConfig(BASE + section, "t.toml");
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const i = e.issues[0]!;
    return `${i.line}|${i.key}|${i.detail}`;
  }
  throw new Error("config was accepted");
}

/** A section's settings, checked as the loader checks it. */
const configureTracing = (section: Record<string, unknown>) => moduleSettings("tracing", section);

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

test("[tracing] belongs to the observability feature; defaults as documented", () => {
  expect(moduleFor("tracing")?.feature).toBe("observability");
  expect(configureTracing({})).toEqual({ ...DEFAULTS, headers: {} });
  expect(configureTracing({ sample_ratio: 0.25, headers: { authorization: "Bearer x" } })).toMatchObject({ sample_ratio: 0.25, headers: { authorization: "Bearer x" } });
  expect(() => parseConfig(BASE + `[tracing]\nendpoint = "https://otel.example:4318/v1/traces"\nsample_ratio = 0.1\n`, "t.toml")).not.toThrow();
});

test("bad [tracing] values fail at load naming the key and line", () => {
  expect(failure(`[tracing]\nsample_ratio = 1.5\n`)).toBe("7|tracing.sample_ratio|expected a number in 0..1, got 1.5");
  expect(failure(`[tracing]\nendpoint = "localhost:4318"\n`)).toStartWith("7|tracing.endpoint|expected an http(s) URL");
  expect(failure(`[tracing]\nmax_queue_size = 0\n`)).toBe("7|tracing.max_queue_size|expected an integer in 1..1000000, got 0");
  expect(failure(`[tracing]\nmax_queue_size = 10\nmax_batch_size = 20\n`)).toBe("8|tracing.max_batch_size|must not exceed max_queue_size (10), got 20");
  expect(failure(`[tracing]\nsampler = "always"\n`)).toBe("7|tracing.sampler|unknown key (valid: enabled, endpoint, headers, service_name, sample_ratio, parent_based, max_queue_size, max_batch_size, batch_delay_ms, export_timeout_ms)");
  expect(failure(`[tracing]\nheaders = { "bad header" = "x" }\n`)).toStartWith("7|tracing.headers.bad header|");
});

test("traceparent headers: version 00 exact, all-zero ids and version ff refused, flags kept", () => {
  expect(parseTraceParent(TP)).toEqual({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", flags: 1 });
  expect(parseTraceParent(TP.replace(/-01$/, "-00"))?.flags).toBe(0);
  expect(parseTraceParent(`00-${"0".repeat(32)}-00f067aa0ba902b7-01`)).toBeNull();
  expect(parseTraceParent(`00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`)).toBeNull();
  expect(parseTraceParent(TP.replace(/^00/, "ff"))).toBeNull();
  expect(parseTraceParent(TP + "-extra")).toBeNull();
  expect(parseTraceParent("01" + TP.slice(2) + "-future")?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  expect(parseTraceParent("nonsense")).toBeNull();
});

test("sqlcommenter comments: URL-encoded values, anywhere in the statement, tracestate kept; look-alikes outside comments ignored", () => {
  const enc = encodeURIComponent(TP);
  expect(traceParentInSql(`SELECT 1 /*action='run',traceparent='${enc}',tracestate='congo%3Dt61rcWkgMzE'*/`)).toEqual({
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    flags: 1,
    traceState: "congo=t61rcWkgMzE",
  });
  expect(traceParentInSql(`/*traceparent='${TP}'*/ SELECT 1`)?.spanId).toBe("00f067aa0ba902b7");
  expect(traceParentInSql(`SELECT 'traceparent=''${TP}'''`)).toBeNull();
  expect(traceParentInSql(`SELECT 1 /* done */ -- traceparent='${TP}'`)).toBeNull();
  expect(traceParentInSql("SELECT 1")).toBeNull();
});

test("startup trace context: a parameter of its own, or -c in options", () => {
  expect(traceContextParam(new Map([["traceparent", TP]]))).toBe(TP);
  expect(traceContextParam(new Map([["options", `-c statement_timeout=5s -c traceparent=${TP}`]]))).toBe(TP);
  expect(traceContextParam(new Map([["options", "-c statement_timeout=5s"]]))).toBeUndefined();
});

test("operation names: the first keyword in upper case", () => {
  expect(operationName("select $1")).toBe("SELECT");
  expect(operationName("(SELECT 1) UNION (SELECT 2)")).toBe("SELECT");
  expect(operationName("  insert into t values ($1)")).toBe("INSERT");
  expect(operationName("")).toBe("");
});
