// A pooled client's named prepared statements on their way to servers: shared server-side names, Parse injected where a server lacks one, a bounded per-server cache, undo when a request fails.

import { Fe } from "../protocol/codes.ts";
import { writeInt32 } from "../protocol/framing.ts";
import { build } from "../protocol/writer.ts";
import type { ServerConnection } from "../server/connection.ts";
import { Pending } from "../server/response-queue.ts";
import type { SessionEffects } from "./effects.ts";
import { entryForParse, type StatementEntry } from "./prepared.ts";
import { raiseSql } from "./raise.ts";
import type { RequestCtx } from "./request-ctx.ts";
import type { Staging } from "./staging.ts";

const decoder = new TextDecoder();

export class StatementTracker {
  /** Client statement name -> shared server-side statement (pooled modes). */
  readonly statements = new Map<string, StatementEntry>();
  /**
   * Statement names added or closed by requests PostgreSQL has not finished: entry number of the
   * message on the server queue, the name, and what the name meant before. Undone if skipped.
   */
  private nameChanges: { at: number; name: string; before: StatementEntry | undefined }[] = [];
  /** Server-side names of statements whose creation was undone, for error messages (bounded). */
  private forgotten = new Map<string, string>();

  constructor(
    private readonly stage: Staging,
    private readonly limit: () => number,
    /** Whether new statements are classified (reads may go to standbys, or modules look). */
    private readonly classify: () => boolean,
  ) {}

  /**
   * A Parse of a named statement (the view's), staged after what came before it. `replaying`: a
   * replayed transaction prepares again what it prepared the first time (the client already has it).
   */
  parse(server: ServerConnection, v: RequestCtx, effects: SessionEffects, run: number, replaying: boolean): void {
    const name = v.statementName();
    const nameEnd = v.nameEnd();
    const existing = this.statements.get(name);
    if (existing !== undefined && replaying && existing.global === entryForParse(v.b, nameEnd, v.end).global) {
      this.ensurePrepared(server, existing);
      server.expect(Pending.FakeParseComplete);
    } else if (existing !== undefined) {
      this.raiseError(server, "42P05", `prepared statement "${name}" already exists`);
    } else {
      const entry = entryForParse(v.b, nameEnd, v.end);
      effects.describeEntry(entry, server, v, this.stage, run);
      if (this.classify()) entry.write = v.isWrite();
      this.statements.set(name, entry);
      const g = entry.global;
      if (this.knownPrepared(server, g)) {
        server.expect(Pending.FakeParseComplete);
      } else {
        this.evictIfFull(server);
        this.stage.put(entry.parse, 0, entry.parse.length);
        server.prepared.set(g, true);
        server.expect(Pending.Parse, g);
      }
      this.nameChanges.push({ at: server.queue.pushed - 1, name, before: undefined });
    }
  }

  /** Stage a Bind of a kept statement under its server-side name (prepared there first if needed). */
  bind(server: ServerConnection, v: RequestCtx, entry: StatementEntry): void {
    this.ensurePrepared(server, entry);
    this.stage.putRenamed(v.b, v.pos, v.nameStart(), v.nameEnd(), v.end, entry.global);
    server.expect(Pending.Bind);
  }

  /** Close of a named statement: answered here, the server copy stays cached for others (PostgreSQL answers CloseComplete even for unknown names). */
  close(server: ServerConnection, name: string): void {
    this.nameChanges.push({ at: server.queue.pushed, name, before: this.statements.get(name) });
    this.statements.delete(name);
    server.expect(Pending.FakeCloseComplete);
  }

  /** Describe of a kept statement, under its server-side name. */
  describe(server: ServerConnection, v: RequestCtx, entry: StatementEntry): void {
    this.ensurePrepared(server, entry);
    this.stage.putRenamed(v.b, v.pos, v.nameStart(), v.nameEnd(), v.end, entry.global);
    server.expect(Pending.Describe);
  }

  /** Make sure the server knows the statement: inject its Parse (reply swallowed) if not. */
  private ensurePrepared(server: ServerConnection, entry: StatementEntry): void {
    const g = entry.global;
    if (this.knownPrepared(server, g)) return;
    this.evictIfFull(server);
    this.stage.put(entry.parse, 0, entry.parse.length);
    server.prepared.set(g, true);
    server.expect(Pending.InjectedParse, g);
  }

  /**
   * The server has statement `g` (marked most recently used). On a server whose statements are
   * uncertain the answer is no, after staging a Close of `g` (a Close of a missing statement
   * succeeds), so the Parse that follows can neither collide nor be missing.
   */
  knownPrepared(server: ServerConnection, g: string): boolean {
    if (server.preparedUncertain) {
      server.prepared.delete(g);
      const close = build((w) => w.msg(Fe.Close).byte(83).cstr(g).end());
      this.stage.put(close, 0, close.length);
      server.expect(Pending.InjectedClose, g);
      return false;
    }
    if (!server.prepared.has(g)) return false;
    server.prepared.delete(g);
    server.prepared.set(g, true);
    return true;
  }

  /** Keep the per-server statement cache bounded: close the least recently used one. */
  evictIfFull(server: ServerConnection): void {
    const limit = this.limit();
    while (server.prepared.size >= limit) {
      const oldest = server.prepared.keys().next().value as string;
      server.prepared.delete(oldest);
      const close = build((w) => w.msg(Fe.Close).byte(83).cstr(oldest).end());
      this.stage.put(close, 0, close.length);
      // Named: if an error skips the Close, the server still has the statement (see skipToSync).
      server.expect(Pending.InjectedClose, oldest);
    }
  }

  /** Make the server report an error with our SQLSTATE at this point of an extended-protocol request. */
  private raiseError(server: ServerConnection, code: string, message: string): void {
    const body = raiseSql(code, message);
    const msgs = build((w) => {
      w.msg(Fe.Parse).cstr("").cstr(body).int16(0).end();
      w.msg(Fe.Bind).cstr("").cstr("").int16(0).int16(0).int16(0).end();
      w.msg(Fe.Execute).cstr("").int32(0).end();
    });
    this.stage.put(msgs, 0, msgs.length);
    server.expect(Pending.InjectedParse);
    server.expect(Pending.InjectedBind);
    server.expect(Pending.Execute);
  }

  /** A request failed at entry `failed`: name changes from there on never happened. */
  undoFrom(failed: number): void {
    const changes = this.nameChanges;
    for (let i = changes.length - 1; i >= 0 && changes[i]!.at >= failed; i--) {
      const c = changes.pop()!;
      const undone = this.statements.get(c.name);
      if (undone) this.forgotten.set(undone.global, c.name);
      if (c.before === undefined) this.statements.delete(c.name);
      else this.statements.set(c.name, c.before);
    }
  }

  /** A ReadyForQuery: the changes of finished requests stand. */
  settled(server: ServerConnection): void {
    if (this.nameChanges.length === 0) return;
    const done = server.queue.shifted;
    this.nameChanges = this.nameChanges.filter((c) => c.at >= done);
  }

  serverGone(): void {
    this.nameChanges = [];
  }

  /** An error naming a server-side statement ("hp_N") is rewritten to name the client's statement. */
  clientError(b: Uint8Array, from: number, to: number): Uint8Array | null {
    const text = decoder.decode(b.subarray(from + 5, to));
    const m = /"(hp_[0-9a-z]+)"/.exec(text);
    if (!m) return null;
    const global = m[1]!;
    let name = this.forgotten.get(global);
    if (name === undefined) for (const [n, e] of this.statements) if (e.global === global) name = n;
    if (name === undefined) return null;
    if (this.forgotten.size > 64) this.forgotten.clear();
    const fields = text.split("\0").map((f) => (f.length > 1 ? f[0] + f.slice(1).replaceAll(`"${global}"`, `"${name}"`) : f));
    const body = new TextEncoder().encode(fields.join("\0"));
    const out = new Uint8Array(body.length + 5);
    out[0] = b[from]!;
    writeInt32(out, 1, body.length + 4);
    out.set(body, 5);
    return out;
  }
}
