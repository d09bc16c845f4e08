// The [tracing] config slice (feature observability): OTLP/HTTP endpoint, sampling and the export queue, validated key by key.

import { ModuleConfigError } from "../../core/hooks.ts";
import { boolKey, numberKey, unknownKey } from "../config-keys.ts";

export interface TracingSettings {
  enabled: boolean;
  /** OTLP/HTTP traces URL of the collector (JSON encoding). */
  endpoint: string;
  /** Extra HTTP headers sent with every export (collector auth). */
  headers: Record<string, string>;
  /** service.name of the spans' resource. */
  service_name: string;
  /** Share (0..1) of new traces recorded. */
  sample_ratio: number;
  /** A request whose parent (traceparent) came with a sampling decision follows it; sample_ratio applies to roots only. */
  parent_based: boolean;
  /** Finished spans waiting for export; past this they are dropped, never waited for. */
  max_queue_size: number;
  /** Spans per export request. */
  max_batch_size: number;
  /** Longest a finished span waits before a batch leaves. */
  batch_delay_ms: number;
  /** An export the collector has not answered by then is abandoned. */
  export_timeout_ms: number;
}

export const DEFAULTS: Readonly<TracingSettings> = {
  enabled: true,
  endpoint: "http://127.0.0.1:4318/v1/traces",
  headers: {},
  service_name: "heliosproxy",
  sample_ratio: 1,
  parent_based: true,
  max_queue_size: 2048,
  max_batch_size: 512,
  batch_delay_ms: 1000,
  export_timeout_ms: 5000,
};

function intKey(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw new ModuleConfigError(key, `expected an integer ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function urlKey(key: string, v: unknown): string {
  if (typeof v !== "string" || !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(v)) throw new ModuleConfigError(key, `expected an http(s) URL such as "http://otel-collector:4318/v1/traces", got ${JSON.stringify(v)}`);
  return v;
}

function headersKey(key: string, v: unknown): Record<string, string> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ModuleConfigError(key, `expected a table of header = "value", got ${JSON.stringify(v)}`);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(v)) {
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) throw new ModuleConfigError(`${key}.${name}`, "not a valid HTTP header name");
    if (typeof value !== "string" || /[\r\n]/.test(value)) throw new ModuleConfigError(`${key}.${name}`, `expected a one-line string, got ${JSON.stringify(value)}`);
    out[name] = value;
  }
  return out;
}

export function configureTracing(section: Readonly<Record<string, unknown>>): TracingSettings {
  const out: TracingSettings = { ...DEFAULTS, headers: {} };
  for (const [key, value] of Object.entries(section)) {
    if (key === "enabled" || key === "parent_based") out[key] = boolKey(key, value);
    else if (key === "endpoint") out.endpoint = urlKey(key, value);
    else if (key === "headers") out.headers = headersKey(key, value);
    else if (key === "service_name") {
      if (typeof value !== "string" || value.trim() === "") throw new ModuleConfigError(key, `expected a non-empty string, got ${JSON.stringify(value)}`);
      out.service_name = value;
    } else if (key === "sample_ratio") out.sample_ratio = numberKey(key, value, 0, 1);
    else if (key === "max_queue_size") out.max_queue_size = intKey(key, value, 1, 1_000_000);
    else if (key === "max_batch_size") out.max_batch_size = intKey(key, value, 1, 1_000_000);
    else if (key === "batch_delay_ms") out.batch_delay_ms = intKey(key, value, 1, 60_000);
    else if (key === "export_timeout_ms") out.export_timeout_ms = intKey(key, value, 100, 60_000);
    else throw unknownKey(key, Object.keys(DEFAULTS));
  }
  if (out.max_batch_size > out.max_queue_size) throw new ModuleConfigError("max_batch_size", `must not exceed max_queue_size (${out.max_queue_size}), got ${out.max_batch_size}`);
  return out;
}
