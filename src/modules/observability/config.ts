// The [tracing] config section (feature observability): OTLP/HTTP endpoint, sampling and the export queue, and the checks spanning keys.

import { ModuleConfigError } from "../../core/hooks.ts";
import { moduleConfig } from "../../config/schema.ts";

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

export const config = moduleConfig<TracingSettings>("OpenTelemetry traces: one span per client request, exported over OTLP/HTTP.", {
  endpoint: { kind: "string", default: DEFAULTS.endpoint, doc: "OTLP/HTTP traces URL of the collector (JSON encoding)." },
  headers: { kind: "map", item: { kind: "string", secret: true, doc: "Header value (often a credential)." }, doc: "Extra HTTP headers sent with every export (collector auth)." },
  service_name: { kind: "string", default: DEFAULTS.service_name, doc: "service.name of the spans' resource." },
  sample_ratio: { kind: "number", default: DEFAULTS.sample_ratio, min: 0, max: 1, doc: "Share (0..1) of new traces recorded." },
  parent_based: { kind: "bool", default: DEFAULTS.parent_based, doc: "A request whose parent came with a sampling decision follows it; sample_ratio applies to roots only." },
  max_queue_size: { kind: "int", default: DEFAULTS.max_queue_size, min: 1, max: 1_000_000, doc: "Finished spans waiting for export; past this they are dropped, never waited for." },
  max_batch_size: { kind: "int", default: DEFAULTS.max_batch_size, min: 1, max: 1_000_000, doc: "Spans per export request (at most max_queue_size)." },
  batch_delay_ms: { kind: "int", default: DEFAULTS.batch_delay_ms, min: 1, max: 60_000, doc: "Longest a finished span waits before a batch leaves." },
  export_timeout_ms: { kind: "int", default: DEFAULTS.export_timeout_ms, min: 100, max: 60_000, doc: "An export the collector has not answered by then is abandoned." },
});

/** Checks beyond each key's own type and range, on the validated section. */
export function configureTracing(section: Readonly<Record<string, unknown>>): TracingSettings {
  const s = section as unknown as TracingSettings;
  if (!/^https?:\/\/[^/\s]+(\/\S*)?$/.test(s.endpoint)) throw new ModuleConfigError("endpoint", `expected an http(s) URL such as "http://otel-collector:4318/v1/traces", got ${JSON.stringify(s.endpoint)}`);
  for (const [name, value] of Object.entries(s.headers)) {
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) throw new ModuleConfigError(`headers.${name}`, "not a valid HTTP header name");
    if (/[\r\n]/.test(value)) throw new ModuleConfigError(`headers.${name}`, "expected a one-line string");
  }
  if (s.service_name.trim() === "") throw new ModuleConfigError("service_name", `expected a non-empty string, got ${JSON.stringify(s.service_name)}`);
  if (s.max_batch_size > s.max_queue_size) throw new ModuleConfigError("max_batch_size", `must not exceed max_queue_size (${s.max_queue_size}), got ${s.max_batch_size}`);
  return s;
}
