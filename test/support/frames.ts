// One frame builder, backend-message reader and raw-socket client for every malformed-traffic test.

import { connect, type Socket } from "node:net";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

// ---- bytes -------------------------------------------------------------------------------

export type Part = Uint8Array | string | number[];

function toBytes(p: Part): Uint8Array {
  if (typeof p === "string") return encoder.encode(p);
  if (Array.isArray(p)) return Uint8Array.from(p);
  return p;
}

/** Concatenate byte parts (strings are UTF-8 without a terminator). */
export function concat(...parts: Part[]): Uint8Array {
  const bufs = parts.map(toBytes);
  const out = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
  let p = 0;
  for (const b of bufs) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

export function int32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v | 0);
  return b;
}

export function int16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setInt16(0, v);
  return b;
}

/** NUL-terminated UTF-8 string. */
export function cstr(s: string): Uint8Array {
  return concat(s, [0]);
}

// ---- untyped first packets -----------------------------------------------------------------

/** Length word followed by `body`; `length` overrides the declared length (default: real length). */
export function untyped(body: Part, length?: number): Uint8Array {
  const b = toBytes(body);
  return concat(int32(length ?? b.length + 4), b);
}

export interface StartupOptions {
  major?: number;
  minor?: number;
  /** Final NUL after the last key/value pair (default true). */
  terminator?: boolean;
  /** Declared length, whatever the real size. */
  length?: number;
}

/** StartupMessage with any protocol version, parameters in the given order. */
export function startup(params: Record<string, string> | [string, string][], o: StartupOptions = {}): Uint8Array {
  const pairs = Array.isArray(params) ? params : Object.entries(params);
  const body = concat(
    int16(o.major ?? 3),
    int16(o.minor ?? 0),
    ...pairs.flatMap(([k, v]) => [cstr(k), cstr(v)]),
    o.terminator === false ? [] : [0],
  );
  return untyped(body, o.length);
}

export function sslRequest(): Uint8Array {
  return untyped(int32(SSL_REQUEST_CODE));
}

export function gssencRequest(): Uint8Array {
  return untyped(int32(GSSENC_REQUEST_CODE));
}

/** CancelRequest; `secret` is the key bytes (or a 4-byte key as a number). */
export function cancelRequest(pid: number, secret: Uint8Array | number, o: { length?: number } = {}): Uint8Array {
  const key = typeof secret === "number" ? int32(secret) : secret;
  return untyped(concat(int32(CANCEL_REQUEST_CODE), int32(pid), key), o.length);
}

// ---- typed frontend messages -----------------------------------------------------------------

/** Any typed message: type byte, declared length (default: real), body. */
export function message(type: string | number, body: Part = new Uint8Array(0), o: { length?: number } = {}): Uint8Array {
  const b = toBytes(body);
  const t = typeof type === "string" ? type.charCodeAt(0) : type;
  return concat([t], int32(o.length ?? b.length + 4), b);
}

/** Query ('Q'); `terminator: false` leaves out the NUL. */
export function query(sql: string, o: { terminator?: boolean } = {}): Uint8Array {
  return message("Q", o.terminator === false ? sql : cstr(sql));
}

export function parse(name: string, sql: string, paramTypes: number[] = []): Uint8Array {
  return message("P", concat(cstr(name), cstr(sql), int16(paramTypes.length), ...paramTypes.map(int32)));
}

export interface BindOptions {
  paramFormats?: number[];
  resultFormats?: number[];
}

/** Bind; a string parameter is sent as UTF-8 text, null as SQL NULL. */
export function bind(portal: string, statement: string, params: (string | Uint8Array | null)[] = [], o: BindOptions = {}): Uint8Array {
  const pf = o.paramFormats ?? [];
  const rf = o.resultFormats ?? [];
  const values = params.map((p) => {
    if (p === null) return int32(-1);
    const v = toBytes(p);
    return concat(int32(v.length), v);
  });
  return message(
    "B",
    concat(cstr(portal), cstr(statement), int16(pf.length), ...pf.map(int16), int16(params.length), ...values, int16(rf.length), ...rf.map(int16)),
  );
}

export function execute(portal = "", maxRows = 0): Uint8Array {
  return message("E", concat(cstr(portal), int32(maxRows)));
}

export function describe(kind: "S" | "P", name = ""): Uint8Array {
  return message("D", concat(kind, cstr(name)));
}

export function close(kind: "S" | "P", name = ""): Uint8Array {
  return message("C", concat(kind, cstr(name)));
}

export const sync = (): Uint8Array => message("S");
export const flush = (): Uint8Array => message("H");
export const terminate = (): Uint8Array => message("X");
export const password = (pw: string): Uint8Array => message("p", cstr(pw));
export const copyData = (data: Part): Uint8Array => message("d", data);
export const copyDone = (): Uint8Array => message("c");
export const copyFail = (reason: string): Uint8Array => message("f", cstr(reason));

/** Parse + Bind + Execute of an unnamed statement with text parameters. */
export function extended(sql: string, params: (string | null)[] = []): Uint8Array {
  return concat(parse("", sql), bind("", "", params), execute());
}

// ---- backend messages ------------------------------------------------------------------------

export interface BackendMessage {
  /** The type letter; for a one-byte SSL/GSS answer, that byte ('S' or 'N'). */
  type: string;
  body: Uint8Array;
}

/**
 * Incremental parser of a backend byte stream. `expectSingleByte()` before an SSLRequest or
 * GSSENCRequest: the next byte, if 'S' or 'N', is taken alone (anything else is a real message).
 */
export class BackendReader {
  readonly messages: BackendMessage[] = [];
  /** Unframed bytes, kept as chunks until enough arrived for the next message. */
  private pending: Uint8Array[] = [];
  private pendingLength = 0;
  private need = 1;
  private singles = 0;
  /** True once a message declared a length below 4 (the stream cannot be framed any further). */
  broken = false;

  expectSingleByte(): void {
    this.singles++;
  }

  push(chunk: Uint8Array): void {
    this.pending.push(chunk.slice());
    this.pendingLength += chunk.length;
    if (this.pendingLength < this.need || this.broken) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : concat(...this.pending);
    let p = 0;
    this.need = 1;
    while (!this.broken && p < buf.length) {
      if (this.singles > 0) {
        const c = buf[p]!;
        this.singles--;
        if (c === 83 || c === 78) {
          this.messages.push({ type: String.fromCharCode(c), body: new Uint8Array(0) });
          p++;
          continue;
        }
      }
      if (buf.length - p < 5) {
        this.need = 5;
        break;
      }
      const len = new DataView(buf.buffer, buf.byteOffset + p + 1, 4).getInt32(0);
      if (len < 4) {
        this.broken = true;
        break;
      }
      if (buf.length - p < 1 + len) {
        this.need = 1 + len;
        break;
      }
      this.messages.push({ type: String.fromCharCode(buf[p]!), body: buf.slice(p + 5, p + 1 + len) });
      p += 1 + len;
    }
    const rest = buf.subarray(p);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingLength = rest.length;
  }

  /** Bytes received that do not (yet) form a whole message. */
  get rest(): number {
    return this.pendingLength;
  }
}

/** Parse a complete backend byte stream. */
export function parseBackend(bytes: Uint8Array, o: { singleBytes?: number } = {}): { messages: BackendMessage[]; rest: number } {
  const r = new BackendReader();
  for (let i = 0; i < (o.singleBytes ?? 0); i++) r.expectSingleByte();
  r.push(bytes);
  return { messages: r.messages, rest: r.rest };
}

export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  /** Every field by its one-letter code. */
  fields: Record<string, string>;
}

/** Decode an ErrorResponse or NoticeResponse body. */
export function errorFields(body: Uint8Array): ErrorFields {
  const fields: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const code = String.fromCharCode(body[p]!);
    let z = body.indexOf(0, p + 1);
    if (z < 0) z = body.length;
    fields[code] = decoder.decode(body.subarray(p + 1, z));
    p = z + 1;
  }
  return {
    severity: fields.V ?? fields.S ?? "",
    code: fields.C ?? "",
    message: fields.M ?? "",
    ...(fields.D !== undefined ? { detail: fields.D } : {}),
    fields,
  };
}

/** The type letters of a message list, e.g. "RSSKZ". */
export function types(msgs: BackendMessage[]): string {
  return msgs.map((m) => m.type).join("");
}

/** The errors in a message list (ErrorResponse only). */
export function errors(msgs: BackendMessage[]): ErrorFields[] {
  return msgs.filter((m) => m.type === "E").map((m) => errorFields(m.body));
}

/** Transaction status letter of a ReadyForQuery. */
export function readyStatus(m: BackendMessage): string {
  return String.fromCharCode(m.body[0]!);
}

export function commandTag(m: BackendMessage): string {
  return decoder.decode(m.body.subarray(0, m.body.indexOf(0)));
}

/** Text values of a DataRow (null for SQL NULL). */
export function dataRow(m: BackendMessage): (string | null)[] {
  const dv = new DataView(m.body.buffer, m.body.byteOffset, m.body.length);
  const n = dv.getInt16(0);
  const out: (string | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = dv.getInt32(p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(decoder.decode(m.body.subarray(p, p + len)));
      p += len;
    }
  }
  return out;
}

/** First-column values of every DataRow. */
export function firstColumn(msgs: BackendMessage[]): (string | null)[] {
  return msgs.filter((m) => m.type === "D").map((m) => dataRow(m)[0]!);
}

/** pid and secret key of a BackendKeyData. */
export function backendKey(m: BackendMessage): { pid: number; secret: Uint8Array } {
  return { pid: new DataView(m.body.buffer, m.body.byteOffset, 4).getInt32(0), secret: m.body.slice(4) };
}

/** ParameterStatus name and value. */
export function parameterStatus(m: BackendMessage): [string, string] {
  const z = m.body.indexOf(0);
  return [decoder.decode(m.body.subarray(0, z)), decoder.decode(m.body.subarray(z + 1, m.body.indexOf(0, z + 1)))];
}

/** NegotiateProtocolVersion: newest minor version and the unsupported options. */
export function negotiateProtocolVersion(m: BackendMessage): { minor: number; options: string[] } {
  const dv = new DataView(m.body.buffer, m.body.byteOffset, m.body.length);
  const minor = dv.getInt32(0) & 0xffff;
  const n = dv.getInt32(4);
  const options: string[] = [];
  let p = 8;
  for (let i = 0; i < n; i++) {
    const z = m.body.indexOf(0, p);
    options.push(decoder.decode(m.body.subarray(p, z)));
    p = z + 1;
  }
  return { minor, options };
}

// ---- raw socket --------------------------------------------------------------------------------

export interface SendOptions {
  /** Split the bytes into pieces of this size (1 = byte by byte). */
  chunkSize?: number;
  /** Or split at these offsets (sorted, inside the buffer). */
  splitAt?: number[];
  /** Pause between pieces. */
  delayMs?: number;
}

/**
 * A TCP client that writes exactly the bytes it is given and records everything the server sends,
 * when the server closed, and how long after the last write.
 */
export class RawConn {
  readonly reader = new BackendReader();
  private chunks: Uint8Array[] = [];
  closed = false;
  /** ms from the last write to the close (null while open). */
  closedAfterMs: number | null = null;
  /** Messages already handed out by `next` / `untilReady`. */
  cursor = 0;
  private lastWrite = performance.now();
  private waiters = new Set<() => void>();
  /** Every connection not yet closed (tests destroy leftovers before stopping a server). */
  static readonly live = new Set<RawConn>();

  /** Destroy every connection still open. */
  static destroyAll(): void {
    for (const c of RawConn.live) c.destroy();
  }

  private constructor(readonly socket: Socket) {
    RawConn.live.add(this);
    socket.on("close", () => RawConn.live.delete(this));
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      const c = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      this.chunks.push(c);
      this.reader.push(c);
      this.wake();
    });
    const onClose = () => {
      if (this.closed) return;
      this.closed = true;
      this.closedAfterMs = performance.now() - this.lastWrite;
      this.wake();
    };
    socket.on("end", onClose);
    socket.on("close", onClose);
    socket.on("error", onClose);
  }

  static open(port: number, host = "127.0.0.1"): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host });
      s.once("connect", () => resolve(new RawConn(s)));
      s.once("error", reject);
    });
  }

  /** Every byte the server sent so far. */
  get received(): Uint8Array {
    if (this.chunks.length > 1) this.chunks = [concat(...this.chunks)];
    return this.chunks[0] ?? new Uint8Array(0);
  }

  get messages(): BackendMessage[] {
    return this.reader.messages;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Write bytes, whole or in pieces with pauses; resolves once they are handed to the kernel. */
  async send(data: Uint8Array, o: SendOptions = {}): Promise<void> {
    const cuts = o.splitAt ?? [];
    const pieces: Uint8Array[] = [];
    if (o.chunkSize) for (let i = 0; i < data.length; i += o.chunkSize) pieces.push(data.subarray(i, i + o.chunkSize));
    else {
      let prev = 0;
      for (const c of cuts) {
        pieces.push(data.subarray(prev, c));
        prev = c;
      }
      pieces.push(data.subarray(prev));
    }
    for (let i = 0; i < pieces.length; i++) {
      if (this.closed) return;
      const piece = pieces[i]!;
      if (piece.length === 0) continue;
      await new Promise<void>((resolve) => {
        if (!this.socket.write(piece)) this.socket.once("drain", () => resolve());
        else resolve();
      });
      this.lastWrite = performance.now();
      if (o.delayMs !== undefined && i < pieces.length - 1) await Bun.sleep(o.delayMs);
    }
  }

  /** Wait until `pred` holds or the connection closes; false on timeout. */
  waitFor(pred: (c: RawConn) => boolean, timeoutMs = 5000): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (pred(this)) finish(true);
        else if (this.closed) finish(pred(this));
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (v: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(v);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Wait for the server to close; true if it did within the time. */
  waitClosed(timeoutMs = 5000): Promise<boolean> {
    return this.waitFor((c) => c.closed, timeoutMs);
  }

  /**
   * Messages after the cursor up to and including the `count`-th ReadyForQuery (or all of them if
   * the server closed first). Throws on timeout, naming what arrived.
   */
  async untilReady(count = 1, timeoutMs = 10000): Promise<BackendMessage[]> {
    const found = () => {
      let n = 0;
      for (let i = this.cursor; i < this.messages.length; i++) if (this.messages[i]!.type === "Z" && ++n === count) return i + 1;
      return -1;
    };
    const ok = await this.waitFor(() => found() >= 0, timeoutMs);
    const end = ok ? found() : this.messages.length;
    if (!ok && !this.closed) throw new Error(`no ReadyForQuery #${count} after ${timeoutMs} ms; got "${types(this.messages.slice(this.cursor))}"`);
    const out = this.messages.slice(this.cursor, end);
    this.cursor = end;
    return out;
  }

  /** Messages after the cursor, advancing it. */
  take(): BackendMessage[] {
    const out = this.messages.slice(this.cursor);
    this.cursor = this.messages.length;
    return out;
  }

  /** Send, then collect until `count` ReadyForQuery messages (or a close). */
  async roundTrip(data: Uint8Array, count = 1, timeoutMs = 10000): Promise<BackendMessage[]> {
    await this.send(data);
    return this.untilReady(count, timeoutMs);
  }

  /** Send Terminate and close our side. */
  quit(): void {
    if (!this.closed) this.socket.end(terminate());
  }

  /** Close our side (FIN). */
  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  [Symbol.dispose](): void {
    this.socket.destroy();
  }
}

export interface Exchange {
  bytes: Uint8Array;
  messages: BackendMessage[];
  closed: boolean;
  /** ms from the last write to the server's close (null if it did not close). */
  closedAfterMs: number | null;
}

/**
 * Connect, send `data` (optionally in pieces with pauses), and collect until the server closes or
 * `timeoutMs` passes (or `until` holds for the messages so far).
 */
export async function exchange(
  port: number,
  data: Uint8Array,
  o: SendOptions & { timeoutMs?: number; until?: (msgs: BackendMessage[]) => boolean; singleBytes?: number; endAfter?: boolean } = {},
): Promise<Exchange> {
  const c = await RawConn.open(port);
  for (let i = 0; i < (o.singleBytes ?? 0); i++) c.reader.expectSingleByte();
  await c.send(data, o);
  if (o.endAfter) c.end();
  const until = o.until;
  await c.waitFor((x) => x.closed || (until !== undefined && until(x.messages)), o.timeoutMs ?? 2000);
  const r: Exchange = { bytes: c.received, messages: [...c.messages], closed: c.closed, closedAfterMs: c.closedAfterMs };
  c.destroy();
  return r;
}

export interface LoggedIn {
  conn: RawConn;
  pid: number;
  secret: Uint8Array;
  /** The login messages, AuthenticationOk through ReadyForQuery. */
  messages: BackendMessage[];
}

/** Log in with a StartupMessage (trust auth) and read through the first ReadyForQuery. */
export async function login(
  port: number,
  params: Record<string, string> = { user: "postgres", database: "test" },
  o: StartupOptions = {},
): Promise<LoggedIn> {
  const conn = await RawConn.open(port);
  const messages = await conn.roundTrip(startup(params, o));
  const k = messages.find((m) => m.type === "K");
  if (!k || messages.at(-1)?.type !== "Z") {
    conn.destroy();
    const e = errors(messages)[0];
    throw new Error(`login failed: "${types(messages)}"${e ? ` ${e.code} ${e.message}` : ""}`);
  }
  return { conn, ...backendKey(k), messages };
}

/** Log in, run one simple query, and leave; returns its replies (through ReadyForQuery). */
export async function simpleQuery(port: number, sql: string, params: Record<string, string> = { user: "postgres", database: "test" }): Promise<BackendMessage[]> {
  const { conn } = await login(port, params);
  try {
    return await conn.roundTrip(query(sql));
  } finally {
    conn.quit();
  }
}
