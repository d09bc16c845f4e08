// One frame builder and backend-message parser for every raw-protocol test (the raw connection is wire.ts).

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

/** `b` cut at `cuts` (any order; taken modulo length + 1, so any integer is a valid cut); pieces may be empty. */
export function splitAt(b: Uint8Array, cuts: number[]): Uint8Array[] {
  const sorted = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
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

/** SASLInitialResponse ('p'): mechanism, then the client-first data with its length. */
export function saslInitialResponse(mechanism: string, data: Part): Uint8Array {
  const d = toBytes(data);
  return message("p", concat(cstr(mechanism), int32(d.length), d));
}

/** SASLResponse ('p'): the client-final data as is. */
export const saslResponse = (data: Part): Uint8Array => message("p", data);

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
  /** DataRow messages and their bytes (type and length word included), kept or not. */
  dataRows = 0;
  dataRowBytes = 0;
  /** False: DataRows are only counted (a large result read without holding it). */
  keepDataRows = true;
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
      if (buf[p] === 68) {
        // D
        this.dataRows++;
        this.dataRowBytes += 1 + len;
      }
      if (buf[p] !== 68 || this.keepDataRows) this.messages.push({ type: String.fromCharCode(buf[p]!), body: buf.slice(p + 5, p + 1 + len) });
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

/** Authentication request code of an 'R' message (0 ok, 3 cleartext, 5 md5, 10/11/12 SASL). */
export function authCode(m: BackendMessage): number {
  return new DataView(m.body.buffer, m.body.byteOffset, 4).getInt32(0);
}

/** The SASL data of an AuthenticationSASLContinue or AuthenticationSASLFinal, as text. */
export function saslData(m: BackendMessage): string {
  return decoder.decode(m.body.subarray(4));
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

/**
 * A compact, comparable rendering of a reply stream: type letters, with the SQLSTATE of errors
 * and notices, command tags, DataRow values and ReadyForQuery status.
 */
export function summarize(msgs: BackendMessage[]): string[] {
  return msgs.map((m) => {
    switch (m.type) {
      case "E":
      case "N":
        return `${m.type}:${errorFields(m.body).code}`;
      case "C":
        return `C:${commandTag(m)}`;
      case "D":
        return `D:${JSON.stringify(dataRow(m))}`;
      case "Z":
        return `Z:${readyStatus(m)}`;
      default:
        return m.type;
    }
  });
}

export interface QueryResult {
  /** DataRow values as text (null for SQL NULL). */
  rows: (string | null)[][];
  /** The last ErrorResponse, if any. */
  error: ErrorFields | null;
  /** ReadyForQuery status. */
  status: string;
}

/** Rows, error and status of the replies to one simple Query; throws when they end before ReadyForQuery. */
export function queryResult(msgs: BackendMessage[]): QueryResult {
  const rows: (string | null)[][] = [];
  let error: ErrorFields | null = null;
  for (const m of msgs) {
    if (m.type === "D") rows.push(dataRow(m));
    else if (m.type === "E") error = errorFields(m.body);
    else if (m.type === "Z") return { rows, error, status: readyStatus(m) };
  }
  throw Object.assign(new Error(`connection closed during query${error ? `: ${error.code} ${error.message}` : ""}`), { pgError: error });
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
