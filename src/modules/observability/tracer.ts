// Request spans on the OpenTelemetry SDK: sampling, a bounded batch queue and OTLP/HTTP export that never waits on the client's path.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, createTraceState, trace, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import {
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_RESPONSE_STATUS_CODE,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_SERVICE_NAME,
} from "@opentelemetry/semantic-conventions";
import type { ResultCtx } from "../../core/hooks.ts";
import { log } from "../../util/log.ts";
import type { TracingSettings } from "./config.ts";
import type { TraceParent } from "./traceparent.ts";
import { redactSecrets } from "../../protocol/secrets.ts";

/** Longest normalised statement put on a span. */
const MAX_QUERY_TEXT = 4096;

export interface TracingStats {
  spansRecorded: number;
  spansExported: number;
  spansFailed: number;
  exportFailures: number;
}

/** Counts what the exporter did and says once (not per batch) when the collector stops and starts answering. */
class CountingExporter implements SpanExporter {
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly stats: TracingStats,
    private readonly endpoint: string,
  ) {}

  export(spans: ReadableSpan[], done: (r: { code: number; error?: Error }) => void): void {
    this.inner.export(spans, (r) => {
      if (r.code === 0) {
        this.stats.spansExported += spans.length;
        if (this.failing) log.info(`tracing: collector at ${this.endpoint} answers again`);
        this.failing = false;
      } else {
        this.stats.spansFailed += spans.length;
        this.stats.exportFailures++;
        if (!this.failing) log.warn(`tracing: export to ${this.endpoint} failed (${r.error?.message ?? "unknown error"}); spans are dropped while it fails`);
        this.failing = true;
      }
      done(r);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** The first keyword of a normalised statement, upper case ("SELECT"), or "" when there is none. */
export function operationName(normalised: string): string {
  const m = /^[\s(]*([A-Za-z]+)/.exec(normalised);
  return m === null ? "" : m[1]!.toUpperCase();
}

/** Finished work of a session that is not one request (a replay after its server was lost): a span in the session's trace. */
export interface Work {
  readonly name: string;
  /** Epoch milliseconds. */
  readonly start: number;
  readonly end: number;
  readonly attributes: Attributes;
  /** Set when the work ended in an error the client was given (its SQLSTATE). */
  readonly sqlstate?: string;
}

/** Request spans for one proxy process. */
export class RequestTracer {
  readonly stats: TracingStats = { spansRecorded: 0, spansExported: 0, spansFailed: 0, exportFailures: 0 };
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;

  constructor(s: TracingSettings, exporter?: SpanExporter) {
    const ratio = new TraceIdRatioBasedSampler(s.sample_ratio);
    const out = new CountingExporter(exporter ?? new OTLPTraceExporter({ url: s.endpoint, headers: s.headers, timeoutMillis: s.export_timeout_ms }), this.stats, s.endpoint);
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: s.service_name }),
      sampler: s.parent_based ? new ParentBasedSampler({ root: ratio }) : ratio,
      spanProcessors: [
        new BatchSpanProcessor(out, {
          maxQueueSize: s.max_queue_size,
          maxExportBatchSize: s.max_batch_size,
          scheduledDelayMillis: s.batch_delay_ms,
          exportTimeoutMillis: s.export_timeout_ms,
        }),
      ],
    });
    this.tracer = this.provider.getTracer("heliosproxy");
  }

  /**
   * One finished request: a span from its first message to its ReadyForQuery, a child for the wait
   * for a server, or for the module lookup that answered it. Called at ReadyForQuery, so the end is now.
   */
  record(r: ResultCtx, parent: TraceParent | null): void {
    const end = performance.timeOrigin + performance.now();
    const start = end - r.durationMs;
    const span = this.tracer.startSpan("query", { kind: SpanKind.CLIENT, startTime: start }, parent === null ? ROOT_CONTEXT : remoteContext(parent));
    if (!span.isRecording()) return;
    this.stats.spansRecorded++;
    const q = r.query;
    const shape = q.facts();
    const op = operationName(shape.text);
    const db = q.session.database;
    span.updateName(op === "" ? db : `${op} ${db}`);
    const wait = r.waitMs ?? 0;
    span.setAttributes({
      "db.system": "postgresql",
      [ATTR_DB_SYSTEM_NAME]: "postgresql",
      [ATTR_DB_NAMESPACE]: db,
      // Utility statements keep their literals when normalised: passwords in them are masked.
      [ATTR_DB_QUERY_TEXT]: redactSecrets(shape.text.length > MAX_QUERY_TEXT ? shape.text.slice(0, MAX_QUERY_TEXT) : shape.text),
      "db.user": q.session.user,
      "db.response.returned_rows": r.rows,
      "heliosproxy.node": r.node,
      "heliosproxy.protocol": q.protocol,
      "heliosproxy.pool_wait_ms": wait,
      "heliosproxy.server_ms": Math.max(0, r.durationMs - wait),
    });
    if (op !== "") span.setAttribute(ATTR_DB_OPERATION_NAME, op);
    // Answered by a module (a cache hit): no server, no pool wait.
    if (r.answeredBy !== undefined) span.setAttribute("heliosproxy.answered_by", r.answeredBy);
    if (r.error !== undefined) {
      span.setAttributes({ [ATTR_DB_RESPONSE_STATUS_CODE]: r.error.code, [ATTR_ERROR_TYPE]: r.error.code });
      span.setStatus({ code: SpanStatusCode.ERROR, message: `SQLSTATE ${r.error.code}` });
    }
    // A module's answer is the request's one step: a child names who answered (the cache lookup that hit).
    if (r.answeredBy !== undefined) {
      const child = this.tracer.startSpan(`${r.answeredBy} lookup`, { kind: SpanKind.INTERNAL, startTime: start, attributes: { "heliosproxy.answered_by": r.answeredBy, "heliosproxy.hit": true } }, trace.setSpan(ROOT_CONTEXT, span));
      child.end(end);
    }
    if (r.waitMs !== undefined) {
      const child = this.tracer.startSpan("pool wait", { kind: SpanKind.INTERNAL, startTime: start, attributes: { "heliosproxy.node": r.node } }, trace.setSpan(ROOT_CONTEXT, span));
      child.end(start + wait);
    }
    span.end(end);
  }

  /** A span for `w` under `parent` (the application's span the session's requests hang under), sampled as they are. */
  recordWork(w: Work, parent: TraceParent | null): void {
    const span: Span = this.tracer.startSpan(w.name, { kind: SpanKind.INTERNAL, startTime: w.start, attributes: w.attributes }, parent === null ? ROOT_CONTEXT : remoteContext(parent));
    if (!span.isRecording()) return;
    this.stats.spansRecorded++;
    if (w.sqlstate !== undefined) {
      span.setAttributes({ [ATTR_DB_RESPONSE_STATUS_CODE]: w.sqlstate, [ATTR_ERROR_TYPE]: w.sqlstate });
      span.setStatus({ code: SpanStatusCode.ERROR, message: `SQLSTATE ${w.sqlstate}` });
    }
    span.end(w.end);
  }

  /** Send what is queued (for a clean stop). */
  flush(): Promise<void> {
    return this.provider.forceFlush();
  }
}

function remoteContext(p: TraceParent): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: p.traceId,
    spanId: p.spanId,
    traceFlags: p.flags & 1,
    isRemote: true,
    traceState: p.traceState ? createTraceState(p.traceState) : undefined,
  });
}
