// Test fixture: an OTLP/HTTP trace receiver (JSON encoding) on a free loopback port, keeping every span it is sent.

type Json = Record<string, any>;

export interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  status: { code?: number; message?: string };
  attrs: Record<string, unknown>;
  /** Start and end, epoch milliseconds. */
  startMs: number;
  endMs: number;
}

/** An OTLP/HTTP trace receiver (JSON encoding) keeping every span it is sent. */
export function otlpReceiver() {
  const spans: Span[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      if (req.method !== "POST" || url.pathname !== "/v1/traces") return new Response("not found", { status: 404 });
      const body = (await req.json()) as Json;
      for (const rs of body.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? []) {
            const attrs: Record<string, unknown> = {};
            for (const a of s.attributes ?? []) {
              const v = a.value;
              attrs[a.key] = v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue ?? v.boolValue);
            }
            attrs["service.name"] = rs.resource?.attributes?.find((a: Json) => a.key === "service.name")?.value?.stringValue;
            const ms = (ns: string | number) => Number(BigInt(ns) / 1000n) / 1000;
            spans.push({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? "",
              name: s.name,
              status: s.status ?? {},
              attrs,
              startMs: ms(s.startTimeUnixNano),
              endMs: ms(s.endTimeUnixNano),
            });
          }
      return Response.json({});
    },
  });
  return { spans, url: `http://127.0.0.1:${server.port}/v1/traces`, stop: () => server.stop(true) };
}

/** `bytes` random bytes as lower-case hex (trace ids: 16, span ids: 8). */
export const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

/** A W3C traceparent header value. */
export const traceparent = (traceId: string, spanId: string, sampled = true) => `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
