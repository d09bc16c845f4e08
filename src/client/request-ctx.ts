// The views of one request handed to feature modules: QueryCtx (lazy SQL facts) and ResultCtx (what came back).

import type { QueryCtx, ResultCtx, SessionCtx } from "../core/hooks.ts";
import type { QueryShape, QueryShapeCache } from "../sql/fingerprint.ts";
import type { ResultTally } from "../server/result-tally.ts";

const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** A ReadyForQuery status byte as the letter modules see. */
export function txLetter(status: number): "I" | "T" | "E" {
  return status === 84 ? "T" : status === 69 ? "E" : "I"; // 'T', 'E', else 'I'
}

/** One request as modules see it. Made only when some module has a query or result hook. */
export class RequestCtx implements QueryCtx {
  /** performance.now() when the request's first message was read. */
  readonly startedAt = performance.now();
  /** performance.now() when the request got a server it did not already hold; 0 if it had one. */
  serverAt = 0;
  private shape: QueryShape | null = null;
  private tree: unknown = undefined;
  private text: string | null = null;
  /** The request's messages received so far (a view of the receive buffer, during onQuery only). */
  raw: Uint8Array | null = null;
  /** The Parse of the named statement a Bind-first request executes, when known. */
  prepared: Uint8Array | null = null;
  /** Bytes of reply a module asked to see in onResult (0: none asked). */
  captureMax = 0;

  /** `bytes` is the SQL as UTF-8 (a view of the receive buffer: decoded on demand, or by settle()). */
  constructor(
    readonly session: SessionCtx,
    readonly protocol: "simple" | "extended",
    readonly txStatus: "I" | "T" | "E",
    private bytes: Uint8Array | null,
    private readonly shapes: QueryShapeCache,
    private readonly parser: (sql: string) => unknown,
  ) {}

  sql(): string {
    if (this.text === null) this.text = this.bytes === null ? "" : decoder.decode(this.bytes);
    return this.text;
  }

  sqlBytes(): Uint8Array {
    return this.bytes ?? EMPTY;
  }

  requestBytes(): Uint8Array {
    return this.raw ?? EMPTY;
  }

  preparedStatement(): Uint8Array | null {
    return this.prepared;
  }

  captureReply(maxBytes: number): void {
    if (maxBytes > this.captureMax) this.captureMax = maxBytes;
  }

  /** The receive buffer moves on: keep the text (for result hooks), drop the views. */
  settle(): void {
    this.sql();
    this.bytes = null;
    this.raw = null;
  }

  /** Normalised text, fingerprint, kind: one lexer pass, cached by text across requests. */
  facts(): QueryShape {
    return (this.shape ??= this.shapes.get(this.sql()));
  }

  fingerprint(): string {
    return this.facts().fingerprint;
  }

  parse(): unknown {
    if (this.tree === undefined) this.tree = this.parser(this.sql());
    return this.tree;
  }
}

/** The ResultCtx of a finished request. */
export function resultOf(query: RequestCtx, node: string, t: ResultTally, status: number): ResultCtx {
  const r: { -readonly [K in keyof ResultCtx]: ResultCtx[K] } = {
    query,
    node,
    commandTag: t.tag,
    rows: t.rows,
    durationMs: performance.now() - query.startedAt,
    txStatus: txLetter(status),
  };
  if (query.serverAt > 0) r.waitMs = query.serverAt - query.startedAt;
  if (t.errorCode !== "") r.error = { code: t.errorCode, message: t.errorMessage };
  if (query.captureMax > 0) {
    const reply = t.reply();
    if (reply !== undefined) r.reply = reply;
  }
  return r;
}
