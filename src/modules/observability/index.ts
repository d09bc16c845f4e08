// Tracing module (feature observability): one OpenTelemetry span per client request, parented to the application's trace context, with a pool-wait child, and a span per session replay (ha-tr).

import { HOOKS_API_VERSION, type ProxyModule, type ResultCtx, type SessionCtx } from "../../core/hooks.ts";
import { config, configureTracing, type TracingSettings } from "./config.ts";
import { RecoverySpans } from "./replay-spans.ts";
import { RequestTracer } from "./tracer.ts";
import { parseTraceParent, traceParentInSql, type TraceParent } from "./traceparent.ts";

/** The parent a session gave at startup, parsed once per session. */
const startupParents = new WeakMap<SessionCtx, TraceParent | null>();

function startupParent(s: SessionCtx): TraceParent | null {
  if (s.traceparent === undefined) return null;
  let p = startupParents.get(s);
  if (p === undefined) startupParents.set(s, (p = parseTraceParent(s.traceparent)));
  return p;
}

/** The statement's own sqlcommenter traceparent wins over the session's startup one. */
export function parentOf(r: ResultCtx): TraceParent | null {
  return traceParentInSql(r.query.sql()) ?? startupParent(r.query.session);
}

const tracing: ProxyModule<TracingSettings> = {
  name: "tracing",
  feature: "observability",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,

  config,
  configure: configureTracing,

  start(settings, host) {
    const tracer = new RequestTracer(settings);
    const st = tracer.stats;
    host.addShow("tracing", () => ({
      columns: ["endpoint", "sample_ratio", "parent_based", "spans_recorded", "spans_exported", "spans_failed", "export_failures"],
      rows: [[settings.endpoint, settings.sample_ratio, settings.parent_based ? 1 : 0, st.spansRecorded, st.spansExported, st.spansFailed, st.exportFailures]],
    }));
    host.addRoute("GET", "/tracing", { summary: "Tracing exporter settings and span counts", returns: "Endpoint, sampling and span counters" }, () =>
      Response.json({
        endpoint: settings.endpoint,
        sample_ratio: settings.sample_ratio,
        parent_based: settings.parent_based,
        spans_recorded: st.spansRecorded,
        spans_exported: st.spansExported,
        spans_failed: st.spansFailed,
        export_failures: st.exportFailures,
      }),
    );
    const replays = new RecoverySpans(tracer);
    return {
      onResult: (r) => {
        const parent = parentOf(r);
        tracer.record(r, parent);
        replays.note(r.query.session.id, parent);
      },
      onRecovery: (r) => replays.add(r),
      onClose: (s) => replays.close(s.id),
    };
  },
};

export default tracing;
