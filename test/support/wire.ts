// One raw protocol-3 client for tests: exact bytes out, framed messages in; logins (trust, cleartext, md5, SCRAM), scripts, parity with PostgreSQL.

import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import * as F from "./frames.ts";
import { PG_HOST, PG_PORT } from "./proxy.ts";

type BackendMessage = F.BackendMessage;

/** The login most tests use. */
export const DEFAULT_LOGIN = { user: "postgres", database: "test" };

export interface SendOptions {
  /** Split the bytes into pieces of this size (1 = byte by byte). */
  chunkSize?: number;
  /** Or split at these offsets (see frames.ts splitAt). */
  splitAt?: number[];
  /** Pause between pieces. */
  delayMs?: number;
}

export interface OpenOptions {
  host?: string;
  /** Give up connecting after this long (default 5 s). */
  timeoutMs?: number;
  /** Keep every byte received, for `received` (off: a long stream is not held). */
  record?: boolean;
}

export interface LoginResult {
  ok: boolean;
  /** Every message received during the login, in order. */
  messages: BackendMessage[];
  error: F.ErrorFields | null;
  /** BackendKeyData, when sent. */
  key: { pid: number; secret: Uint8Array } | null;
  /** SCRAM client-final proof sent (base64), when SCRAM ran. */
  scramProof?: string;
  /** Server-first message received, when SCRAM ran. */
  serverFirst?: string;
}

/**
 * A TCP client that writes exactly the bytes it is given and frames everything the server sends
 * into `messages`; `cursor` marks what next/until/untilReady/take have handed out. It records when
 * the server closed, and how long after the last write.
 */
export class RawConn {
  readonly reader = new F.BackendReader();
  private chunks: Uint8Array[] | null;
  closed = false;
  /** ms from the last write to the close (null while open). */
  closedAfterMs: number | null = null;
  /** Messages already handed out. */
  cursor = 0;
  private lastWrite = performance.now();
  private waiters = new Set<() => void>();
  /** Every connection not yet closed (tests destroy leftovers before stopping a server). */
  static readonly live = new Set<RawConn>();

  /** Destroy every connection still open. */
  static destroyAll(): void {
    for (const c of RawConn.live) c.destroy();
  }

  private constructor(
    readonly socket: Socket,
    record: boolean,
  ) {
    this.chunks = record ? [] : null;
    RawConn.live.add(this);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      const c = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      this.chunks?.push(c);
      this.reader.push(c);
      this.wake();
    });
    const onClose = () => {
      RawConn.live.delete(this);
      if (this.closed) return;
      this.closed = true;
      this.closedAfterMs = performance.now() - this.lastWrite;
      this.wake();
    };
    socket.on("end", onClose);
    socket.on("close", onClose);
    socket.on("error", onClose);
  }

  static open(port: number, o: OpenOptions = {}): Promise<RawConn> {
    const host = o.host ?? PG_HOST;
    const timeoutMs = o.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const s = connect({ port, host });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve(new RawConn(s, o.record ?? false));
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** Connect and send a StartupMessage. */
  static async start(port: number, params: Record<string, string> = DEFAULT_LOGIN, o: F.StartupOptions = {}): Promise<RawConn> {
    const c = await RawConn.open(port);
    await c.send(F.startup(params, o));
    return c;
  }

  /** Every byte the server sent so far (opened with `record`). */
  get received(): Uint8Array {
    if (this.chunks === null) throw new Error("received: open the connection with { record: true }");
    if (this.chunks.length > 1) this.chunks = [F.concat(...this.chunks)];
    return this.chunks[0] ?? new Uint8Array(0);
  }

  get messages(): BackendMessage[] {
    return this.reader.messages;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Write bytes, whole or in pieces with pauses; resolves once they are handed to the kernel (or the connection closed). */
  async send(data: Uint8Array, o: SendOptions = {}): Promise<void> {
    const pieces: Uint8Array[] = [];
    if (o.chunkSize) for (let i = 0; i < data.length; i += o.chunkSize) pieces.push(data.subarray(i, i + o.chunkSize));
    else pieces.push(...F.splitAt(data, o.splitAt ?? []));
    for (let i = 0; i < pieces.length; i++) {
      if (this.closed) return;
      const piece = pieces[i]!;
      if (piece.length === 0) continue;
      await new Promise<void>((resolve) => {
        if (this.socket.write(piece)) return resolve();
        const done = () => {
          this.socket.off("drain", done);
          this.socket.off("close", done);
          resolve();
        };
        this.socket.once("drain", done);
        this.socket.once("close", done);
      });
      this.lastWrite = performance.now();
      if (o.delayMs !== undefined && i < pieces.length - 1) await Bun.sleep(o.delayMs);
    }
  }

  /** Send an SSLRequest (and `extra` bytes in the same write); read the answer with sslAnswer(). */
  sendSslRequest(extra: Uint8Array = new Uint8Array(0)): Promise<void> {
    this.reader.expectSingleByte();
    return this.send(F.concat(F.sslRequest(), extra));
  }

  /**
   * The server's answer to sendSslRequest(): 'S' or 'N', consumed; or the type of the message it
   * answered with instead (an ErrorResponse: 'E'), which stays to be read.
   */
  async sslAnswer(timeoutMs = 5000): Promise<string> {
    if (!(await this.waitFor((c) => c.messages.length > c.cursor, timeoutMs))) {
      throw new Error(this.closed ? "connection closed before the SSL answer" : "no SSL answer");
    }
    const m = this.messages[this.cursor]!;
    if ((m.type === "S" || m.type === "N") && m.body.length === 0) this.cursor++;
    return m.type;
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

  /** The next message after the cursor, or null once the connection closed with nothing left. Throws on timeout. */
  async next(timeoutMs = 10000): Promise<BackendMessage | null> {
    await this.waitFor((c) => c.messages.length > c.cursor, timeoutMs);
    if (this.messages.length > this.cursor) return this.messages[this.cursor++]!;
    if (this.closed) return null;
    throw new Error(`no message within ${timeoutMs} ms`);
  }

  /**
   * Messages after the cursor up to and including the `count`-th whose type is one of `types` (or
   * all of them if the server closed first). Throws on timeout, naming what arrived.
   */
  async until(types: string, timeoutMs = 10000, count = 1): Promise<BackendMessage[]> {
    let i = this.cursor;
    let seen = 0;
    let end = -1;
    const found = () => {
      for (; end < 0 && i < this.messages.length; i++) if (types.includes(this.messages[i]!.type) && ++seen === count) end = i + 1;
      return end >= 0;
    };
    const ok = await this.waitFor(found, timeoutMs);
    if (!ok && !this.closed) throw new Error(`no ${types} #${count} after ${timeoutMs} ms; got "${F.types(this.messages.slice(this.cursor))}"`);
    return this.takeTo(ok ? end : this.messages.length);
  }

  /** Messages after the cursor through the `count`-th ReadyForQuery (or all, if the server closed first). */
  untilReady(count = 1, timeoutMs = 10000): Promise<BackendMessage[]> {
    return this.until("Z", timeoutMs, count);
  }

  /** Every message after the cursor until the server closes; throws if it does not within the time. */
  async drain(timeoutMs = 5000): Promise<BackendMessage[]> {
    if (!(await this.waitClosed(timeoutMs))) throw new Error(`still open after ${timeoutMs} ms; got "${F.types(this.messages.slice(this.cursor))}"`);
    return this.take();
  }

  /** Messages after the cursor, advancing it. */
  take(): BackendMessage[] {
    return this.takeTo(this.messages.length);
  }

  private takeTo(end: number): BackendMessage[] {
    const out = this.messages.slice(this.cursor, end);
    this.cursor = end;
    return out;
  }

  /** Send, then collect until `count` ReadyForQuery messages (or a close). */
  async roundTrip(data: Uint8Array, count = 1, timeoutMs = 10000): Promise<BackendMessage[]> {
    await this.send(data);
    return this.untilReady(count, timeoutMs);
  }

  /** A simple Query's replies through ReadyForQuery. */
  query(sql: string, timeoutMs = 10000): Promise<BackendMessage[]> {
    return this.roundTrip(F.query(sql), 1, timeoutMs);
  }

  /** A simple Query's rows (as text), error and transaction status; throws if the connection closes first. */
  async simpleQuery(sql: string, timeoutMs = 10000): Promise<F.QueryResult> {
    return F.queryResult(await this.query(sql, timeoutMs));
  }

  /**
   * After the StartupMessage: read through the first ReadyForQuery (or an error and close),
   * answering cleartext, md5 and SCRAM-SHA-256 requests with `password` (null: hang up when asked).
   */
  async login(user: string, password: string | null, timeoutMs = 10000): Promise<LoginResult> {
    const res: LoginResult = { ok: false, messages: [], error: null, key: null };
    let scram: ScramClient | null = null;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - performance.now()));
      if (m === null) return res;
      res.messages.push(m);
      if (m.type === "E") res.error = F.errorFields(m.body);
      else if (m.type === "K") res.key = F.backendKey(m);
      else if (m.type === "Z") {
        res.ok = res.error === null;
        return res;
      } else if (m.type === "R") {
        const code = F.authCode(m);
        if (code === 0 || code === 12) continue; // ok; SASL final (its signature is not checked here)
        if (password === null) {
          this.end();
          return res;
        }
        if (code === 3) await this.send(F.password(password));
        else if (code === 5) await this.send(F.password(md5Response(password, user, m.body.subarray(4, 8))));
        else if (code === 10) {
          scram = new ScramClient(password);
          await this.send(F.saslInitialResponse("SCRAM-SHA-256", scram.clientFirst()));
        } else if (code === 11 && scram) {
          res.serverFirst = F.saslData(m);
          const final = scram.clientFinal(res.serverFirst);
          res.scramProof = scram.proof;
          await this.send(F.saslResponse(final));
        } else throw new Error(`unexpected authentication request ${code}`);
      }
    }
  }

  /** Send Terminate and close our side. */
  quit(): void {
    if (!this.closed) this.socket.end(F.terminate());
  }

  /** Close our side (FIN) without a Terminate: a client that vanished. */
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

// ---- one-shot helpers ------------------------------------------------------------------------

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
  const c = await RawConn.open(port, { record: true });
  for (let i = 0; i < (o.singleBytes ?? 0); i++) c.reader.expectSingleByte();
  await c.send(data, o);
  if (o.endAfter) c.end();
  const until = o.until;
  await c.waitFor((x) => x.closed || (until !== undefined && until(x.messages)), o.timeoutMs ?? 2000);
  const r: Exchange = { bytes: c.received, messages: [...c.messages], closed: c.closed, closedAfterMs: c.closedAfterMs };
  c.destroy();
  return r;
}

/** Connect as `params` (user, database, ...) and log in with `password`; the outcome, whatever it is. */
export async function tryLogin(
  port: number,
  params: Record<string, string>,
  password: string | null = null,
  o: F.StartupOptions = {},
): Promise<{ conn: RawConn; login: LoginResult }> {
  const conn = await RawConn.start(port, params, o);
  return { conn, login: await conn.login(params.user ?? "", password) };
}

/** Log in and run `SELECT current_user`: "ok", the SQLSTATE that refused either, or "closed". */
export async function loginOutcome(port: number, params: Record<string, string>, password: string | null): Promise<string> {
  const { conn, login } = await tryLogin(port, params, password);
  if (!login.ok) {
    conn.destroy();
    return login.error?.code ?? "closed";
  }
  const q = await conn.simpleQuery("SELECT current_user");
  conn.end();
  return q.error ? q.error.code : "ok";
}

export interface LoggedIn {
  conn: RawConn;
  pid: number;
  secret: Uint8Array;
  /** The login messages, through the first ReadyForQuery. */
  messages: BackendMessage[];
}

/** Log in (trust, or `o.password`) and read through the first ReadyForQuery; throws when refused. */
export async function login(
  port: number,
  params: Record<string, string> = DEFAULT_LOGIN,
  o: F.StartupOptions & { password?: string } = {},
): Promise<LoggedIn> {
  const { conn, login: r } = await tryLogin(port, params, o.password ?? null, o);
  if (!r.ok || r.key === null) {
    conn.destroy();
    throw new Error(`login failed: "${F.types(r.messages)}"${r.error ? ` ${r.error.code} ${r.error.message}` : ""}`);
  }
  return { conn, ...r.key, messages: r.messages };
}

/** Log in, run one simple query, and leave; returns its replies (through ReadyForQuery). */
export async function queryOnce(port: number, sql: string, params: Record<string, string> = DEFAULT_LOGIN): Promise<BackendMessage[]> {
  const { conn } = await login(port, params);
  try {
    return await conn.query(sql);
  } finally {
    conn.quit();
  }
}

// ---- scripts and parity ---------------------------------------------------------------------

/** One step of a scripted conversation: bytes to send, then read up to `ready` ReadyForQuery messages or until a message of type `until`. */
export interface Step {
  send: Uint8Array[];
  ready?: number;
  until?: string;
}

/** Run `steps` on a connection and return each step's summarised replies. */
export async function runScript(conn: RawConn, steps: Step[]): Promise<string[][]> {
  const out: string[][] = [];
  for (const s of steps) {
    if (s.send.length > 0) await conn.send(F.concat(...s.send));
    out.push(F.summarize(s.until ? await conn.until(s.until) : await conn.untilReady(s.ready ?? 1)));
  }
  return out;
}

/** Run the same script against the proxy and directly against PostgreSQL. */
export async function parity(proxyPort: number, steps: Step[] | (() => Step[])): Promise<{ proxy: string[][]; direct: string[][] }> {
  const mk = typeof steps === "function" ? steps : () => steps;
  const results: string[][][] = [];
  for (const port of [proxyPort, PG_PORT]) {
    const { conn } = await login(port);
    try {
      results.push(await runScript(conn, mk()));
    } finally {
      conn.quit();
    }
  }
  return { proxy: results[0]!, direct: results[1]! };
}

// ---- password hashing, client side (independent of src/protocol, so the proxy is checked against it) ----

/** PasswordMessage text for md5 auth: "md5" + md5(md5(password + user) + salt). */
export function md5Response(password: string, user: string, salt: Uint8Array): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(Buffer.concat([Buffer.from(inner), Buffer.from(salt)])).digest("hex");
}

/** Stored md5 password as pg_authid keeps it. */
export function md5Stored(password: string, user: string): string {
  return "md5" + createHash("md5").update(password + user).digest("hex");
}

/** Client side of SCRAM-SHA-256 (no channel binding). */
export class ScramClient {
  readonly nonce = randomBytes(18).toString("base64");
  private first = "";
  proof = "";

  constructor(private readonly password: string) {}

  clientFirst(): string {
    this.first = `n=,r=${this.nonce}`;
    return `n,,${this.first}`;
  }

  clientFinal(serverFirst: string): string {
    const attrs = parseServerFirst(serverFirst);
    const salted = pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(attrs.s, "base64"), attrs.i, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const withoutProof = `c=biws,r=${attrs.r}`;
    const authMessage = `${this.first},${serverFirst},${withoutProof}`;
    const sig = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ sig[i]!;
    this.proof = proof.toString("base64");
    return `${withoutProof},p=${this.proof}`;
  }
}

/** Fields of a SCRAM server-first message (r, s, i). */
export function parseServerFirst(serverFirst: string): { r: string; s: string; i: number } {
  const a = Object.fromEntries(serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
  return { r: a.r!, s: a.s!, i: Number(a.i) };
}
