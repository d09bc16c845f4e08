// W3C trace context carried by a client: a sqlcommenter `traceparent='…'` comment in the statement, or a startup parameter.

/** A parent span as a traceparent header names it. */
export interface TraceParent {
  readonly traceId: string;
  readonly spanId: string;
  /** Bit 0: the caller sampled this trace. */
  readonly flags: number;
  readonly traceState?: string;
}

const HEADER = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** Parse a traceparent header value ("00-<trace id>-<span id>-<flags>"); null when malformed or all-zero. */
export function parseTraceParent(value: string, traceState?: string): TraceParent | null {
  const m = HEADER.exec(value.trim());
  if (m === null || m[1] === "ff" || m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return null;
  if (m[1] === "00" && value.trim().length !== 55) return null;
  const p: TraceParent = { traceId: m[2]!, spanId: m[3]!, flags: parseInt(m[4]!, 16) };
  return traceState ? { ...p, traceState } : p;
}

/** Longest comment looked at: sqlcommenter comments are short; a huge one is not trace context. */
const MAX_COMMENT = 2048;

/**
 * The traceparent of a sqlcommenter comment (`/*key='value',traceparent='00-…'*\/`, values
 * URL-encoded) anywhere in `sql`, or null. Plain text search first: statements without the word
 * cost one indexOf.
 */
export function traceParentInSql(sql: string): TraceParent | null {
  let at = sql.indexOf("traceparent=");
  while (at >= 0) {
    const open = sql.lastIndexOf("/*", at);
    const close = sql.indexOf("*/", at);
    if (open >= 0 && close > at && close - open <= MAX_COMMENT && sql.lastIndexOf("*/", at) < open) {
      const fields = commentFields(sql.slice(open + 2, close));
      const tp = fields.get("traceparent");
      if (tp !== undefined) return parseTraceParent(tp, fields.get("tracestate"));
    }
    at = sql.indexOf("traceparent=", at + 12);
  }
  return null;
}

/** sqlcommenter key='value' pairs, keys and values URL-decoded. */
function commentFields(body: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of body.matchAll(/([A-Za-z0-9_.%-]+)\s*=\s*'((?:[^'\\]|\\.)*)'/g)) {
    try {
      out.set(decodeURIComponent(m[1]!), decodeURIComponent(m[2]!.replace(/\\'/g, "'")));
    } catch {
      // A malformed escape: not a field we can trust.
    }
  }
  return out;
}
