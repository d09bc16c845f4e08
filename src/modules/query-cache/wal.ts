// invalidation = "wal": per database, a temporary logical slot on the primary streamed with pgoutput; each commit drops the entries of the tables it changed.

import type { ModuleHost, ReplicationLink } from "../../core/hooks.ts";
import { log } from "../../util/log.ts";
import { lsnToNumber } from "../../cluster/health.ts";
import { ChangeDecoder, statusUpdate } from "./pgoutput.ts";

export interface WalSettings {
  publication: string;
  slotPrefix: string;
  /** No message from the server for this long: the stream counts as lost. */
  timeoutMs: number;
}

/** Where a database's follower stands. */
export type WalState = "starting" | "streaming" | "failed";

/** A setup step failed for a reason that retrying soon will not fix (wal_level, permissions). */
class SetupError extends Error {}

const SETUP_TIMEOUT_MS = 30_000;
/** A failed setup or a lost stream is tried again after this long. */
const RETRY_MS = 2_000;
const SETUP_RETRY_MS = 10_000;
const TICK_MS = 1_000;
const PRIMARY_CHANGED = "the primary changed";

/** One database's stream. */
class Follower {
  state: WalState = "starting";
  reason = "";
  node = "";
  slot = "";
  /** Bumped whenever streaming starts or stops: a fill is kept only if its request saw the same, streaming. */
  gen = 0;
  lastHeard = 0;
  since = 0;
  decoder = new ChangeDecoder();
  link: ReplicationLink | null = null;
  retryAt = 0;
  /** Where the slot's stream starts (bytes of WAL). */
  consistentPoint = 0;
  /** The setup failure last logged ("" since streaming). */
  logged = "";
  /** Numbers setup attempts: an attempt overtaken by a newer one (or a loss) stops. */
  attempt = 0;
  stopped = false;

  constructor(readonly database: string) {}
}

export class WalInvalidation {
  private readonly followers = new Map<string, Follower>();
  private readonly timer: ReturnType<typeof setInterval>;
  /** Transactions whose tables were dropped. */
  invalidations = 0;

  constructor(
    private readonly host: Pick<ModuleHost, "catalogQuery" | "replicationConnection">,
    private readonly s: WalSettings,
    /** Drop entries of these tables (or all), refusing fills under way; `lsn`: end of the commit that wrote them (0 for a lost stream). */
    private readonly invalidate: (tables: Iterable<string> | "all", lsn: number) => void,
  ) {
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref?.();
  }

  /**
   * The generation to give a fill of `database` (0: the stream is not running, do not cache);
   * starts the database's follower on first use.
   */
  generation(database: string): number {
    const f = this.followers.get(database);
    if (f === undefined) {
      const nf = new Follower(database);
      this.followers.set(database, nf);
      void this.start(nf);
      return 0;
    }
    return f.state === "streaming" ? f.gen : 0;
  }

  /** The stream has run without a break since generation `gen` was handed out. */
  unbroken(database: string, gen: number): boolean {
    const f = this.followers.get(database);
    return f !== undefined && f.state === "streaming" && f.gen === gen;
  }

  /** The position a standby's reply in `database` must reflect at least: where its stream started. */
  floor(database: string): number {
    return this.followers.get(database)?.consistentPoint ?? 0;
  }

  /** A new primary: every stream starts again there (the cache is flushed by the caller). */
  primaryChanged(): void {
    for (const f of this.followers.values()) this.lost(f, PRIMARY_CHANGED);
  }

  stop(): void {
    clearInterval(this.timer);
    for (const f of this.followers.values()) {
      f.stopped = true;
      f.link?.close();
    }
  }

  report(): Record<string, { state: WalState; reason: string; node: string; slot: string; commits: number; confirmed_lsn: string; last_message_ms: number | null }> {
    const now = Date.now();
    const out: ReturnType<WalInvalidation["report"]> = {};
    for (const f of this.followers.values()) {
      const lsn = f.decoder.processed;
      out[f.database] = {
        state: f.state,
        reason: f.reason,
        node: f.node,
        slot: f.slot,
        commits: f.decoder.commits,
        confirmed_lsn: `${Math.floor(lsn / 0x1_0000_0000).toString(16).toUpperCase()}/${(lsn % 0x1_0000_0000).toString(16).toUpperCase()}`,
        last_message_ms: f.state === "streaming" ? now - f.lastHeard : null,
      };
    }
    return out;
  }

  /** Any database whose stream is not running, and why (for the admin report); null when all run. */
  problem(): string | null {
    for (const f of this.followers.values()) if (f.state !== "streaming") return `${f.database}: ${f.state}${f.reason === "" ? "" : `: ${f.reason}`}`;
    return null;
  }

  private async start(f: Follower): Promise<void> {
    const attempt = ++f.attempt;
    f.state = "starting";
    f.decoder = new ChangeDecoder();
    let link: ReplicationLink | null = null;
    // Superseded (a newer attempt, a lost stream, stop()): this one gives up quietly.
    const current = () => f.attempt === attempt && !f.stopped;
    try {
      await this.publication(f.database);
      const open = this.host.replicationConnection;
      if (open === undefined) throw new SetupError("this proxy cannot open replication connections");
      link = await open(f.database).catch((e: { code?: string; message: string }) => {
        throw new SetupError(`replication login failed (${e.code ?? "08006"}): ${e.message} (the health check user needs REPLICATION or superuser)`);
      });
      if (!current()) return link.close();
      f.link = link;
      f.node = link.node;
      // Random: several proxies (or databases) on one primary each get their own slot.
      f.slot = `${this.s.slotPrefix}_${crypto.randomUUID().slice(0, 8)}`;
      const made = await link.command(`CREATE_REPLICATION_SLOT ${f.slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`, SETUP_TIMEOUT_MS);
      // Commits before this point are not in the stream: a standby reply must reflect at least it.
      f.consistentPoint = lsnToNumber(made[0]?.[1] ?? "0/0");
      if (!current()) return link.close();
      await link.stream(
        `START_REPLICATION SLOT ${f.slot} LOGICAL 0/0 (proto_version '1', publication_names '${this.s.publication}')`,
        { data: (b) => this.data(f, b), end: (reason) => this.lost(f, reason) },
        SETUP_TIMEOUT_MS,
      );
      if (!current() || f.link !== link) return link.close();
      f.lastHeard = f.since = Date.now();
      f.gen++;
      f.state = "streaming";
      f.reason = f.logged = "";
      log.info(`query cache: following ${f.database} on ${f.node} through slot ${f.slot}`);
    } catch (e) {
      link?.close();
      if (!current()) return;
      const err = e as { code?: string; message: string };
      if (f.link === link) f.link = null;
      const reason = e instanceof SetupError ? err.message : `${err.code ?? ""} ${err.message}`.trim();
      // Logged when the reason changes, not at every retry.
      if (reason !== f.logged) log.error(`query cache: invalidation = "wal" cannot follow ${f.database}: ${reason}; its reads are not cached`);
      f.state = "failed";
      f.reason = f.logged = reason;
      // What setup refused (wal_level, permissions, the publication) takes a change on the server: tried less often.
      f.retryAt = Date.now() + (e instanceof SetupError ? SETUP_RETRY_MS : RETRY_MS);
    }
  }

  /** The publication exists and covers every table, or is made so. */
  private async publication(database: string): Promise<void> {
    const q = this.host.catalogQuery;
    if (q === undefined) throw new SetupError("this proxy cannot query the primary's catalog");
    const name = this.s.publication;
    const rows = await q(database, "SELECT current_setting('wal_level'), (SELECT puballtables::text FROM pg_publication WHERE pubname = $1)", [name]);
    const [level, all] = rows[0] ?? [];
    if (level !== "logical") throw new SetupError(`wal_level is "${level}" on the primary; invalidation = "wal" needs wal_level = logical (a server restart)`);
    if (all === "false") throw new SetupError(`publication ${name} does not publish all tables; drop it or name another with wal_publication`);
    if (all === null || all === undefined)
      await q(database, `CREATE PUBLICATION ${name} FOR ALL TABLES`).catch((e: { code?: string; message: string }) => {
        // Another proxy made it meanwhile: fine.
        if (e.code !== "42710" && !/already exists/.test(e.message)) throw new SetupError(`CREATE PUBLICATION ${name} failed: ${e.message}`);
      });
  }

  private data(f: Follower, b: Uint8Array): void {
    f.lastHeard = Date.now();
    const step = f.decoder.step(b);
    if (step === null) return;
    if (step.committed !== undefined) {
      this.invalidations++;
      this.invalidate(step.committed, f.decoder.processed);
    }
    if (step.replyNow) f.link?.send(statusUpdate(f.decoder.processed, false));
  }

  /** The stream broke (or setup was overtaken): nothing cached is known fresh any more; start again. */
  private lost(f: Follower, reason: string): void {
    const was = f.state;
    const link = f.link;
    f.link = null;
    f.gen++;
    if (was === "failed" || f.stopped) {
      link?.close();
      return;
    }
    f.attempt++; // a setup under way gives up
    f.state = "failed";
    f.reason = reason;
    if (was === "streaming") {
      this.invalidate("all", 0);
      log.warn(`query cache: the stream of ${f.database} stopped (${reason}); reads are not cached until it runs again`);
    }
    link?.close();
    f.retryAt = Date.now() + (reason === PRIMARY_CHANGED ? 0 : RETRY_MS);
    if (reason === PRIMARY_CHANGED) void this.start(f);
  }

  private tick(): void {
    const now = Date.now();
    for (const f of this.followers.values()) {
      if (f.state === "failed" && now >= f.retryAt) void this.start(f);
      else if (f.state === "streaming") {
        if (now - f.lastHeard > this.s.timeoutMs) this.lost(f, `no message from the server in ${this.s.timeoutMs} ms`);
        // Confirms progress (the slot keeps less WAL) and asks for an answer: silence means a dead stream.
        else f.link?.send(statusUpdate(f.decoder.processed, true));
      }
    }
  }
}
