// Query cache module: replies to read-only statements served from memory (L1 exact bytes, L2 compressed), keyed by everything that changes them, dropped when a table they read is written.

import { HOOKS_API_VERSION, type ClusterEvent, type CommitPositions, type Hooks, type ProxyModule, type QueryCtx, type QueryDecision, type ResultCtx, type SessionCtx } from "../../core/hooks.ts";
import { loadParser } from "../../sql/classify.ts";
import { fingerprint as fingerprintOf } from "../../sql/fingerprint.ts";
import { registerAdmin, type Bookkeeping, type CacheCounters } from "./admin.ts";
import { Analyzer, SessionChange, type Analysis } from "./analysis.ts";
import { Effect } from "../../sql/session-effects.ts";
import { config, configure, type CacheRule, type QueryCacheSettings } from "./config.ts";
import { cacheable, replyFor, requestForm } from "./request.ts";
import { NAMES_MAX, Relations, type CatalogQuery } from "./relations.ts";
import { StatementMemo, withEffects, type Known } from "./memo.ts";
import { SETTINGS, STATEMENTS_MAX_BYTES, SessionKey, settingsEffects } from "./sessions.ts";
import { MOVING_DATE, type Shape } from "./shape.ts";
import { CacheStore, GENERATIONS_MAX, type Snapshot } from "./store.ts";
import { WalInvalidation } from "./wal.ts";
import { POSITIONS_MAX, UNKNOWN_LSN, WritePositions } from "./freshness.ts";

const EMPTY = new Uint8Array(0);
const NO_CHANGES: readonly string[] = Object.freeze([]);
/** Session effects the cache follows to the end of their request (and transaction). */
const FOLLOWED = SETTINGS | Effect.SetGucParam | Effect.RollbackTo | Effect.Release;
const UNNAMED_GONE = { kind: "reject", sqlstate: "26000", message: "unnamed prepared statement does not exist (its Parse was answered from the query cache; send Parse again)" } as const;

/** A request the module follows to its result. */
interface Pending {
  readonly analysis: Analysis;
  readonly text: string;
  /** Session effects of every statement of the request (the core's scan). */
  readonly fx: Effect;
  /** Its statement texts that change settings, in order. */
  readonly changes: readonly string[];
  /** Set when the reply is to be stored (`known`: the text's, which keeps its fingerprint once computed). */
  fill?: { key: string; tables: readonly string[]; seen: Snapshot; ttlMs: number; structure: string; walGen: number; anyNode: boolean; known: Known };
  /** The module answered it (the proxy may still send it on when earlier replies are owed). */
  answered?: boolean;
}

export class QueryCache implements Hooks {
  /** onResult keys by the query object and keeps its own text: the proxy need not keep each request's. */
  readonly resultReadsText = false;
  readonly store: CacheStore;
  readonly counters: CacheCounters = { bypassed: 0, uncacheable: 0, tooLarge: 0, fromStandby: 0, fills: 0, standbyFills: 0, hitMicros: new Float64Array(4096), hitCount: 0 };
  private readonly memo: StatementMemo;
  private readonly sessions = new Map<number, SessionKey>();
  private readonly pending = new WeakMap<QueryCtx, Pending>();
  readonly relations: Relations;
  /** Set with invalidation = "wal": the replication streams that report commits made anywhere. */
  wal: WalInvalidation | null = null;
  /**
   * Set when the cluster has standbys: commit positions of writes through the proxy. A cacheable
   * miss then asks the router for a node that has replayed the newest commit that wrote its
   * tables, so a standby's reply may be stored.
   */
  commits: CommitPositions | null = null;
  readonly positions = new WritePositions();

  constructor(
    private readonly s: QueryCacheSettings,
    catalog?: CatalogQuery,
    /** Name of the primary now ("" unknown): only its replies are stored (a standby may lag behind a commit). */
    private readonly primary: () => string = () => "",
  ) {
    this.relations = new Relations(catalog, s.cascades);
    this.store = new CacheStore(s.l1_max_bytes, s.l2_max_bytes, s.l2_compression);
    this.memo = new StatementMemo(
      new Analyzer({
        denyFunctions: s.deny_functions,
        cacheableFunctions: s.cacheable_functions,
        dependencies: s.dependencies,
        functionWrites: s.function_writes,
        cascades: s.cascades,
      }),
    );
  }

  onQuery(q: QueryCtx): void | QueryDecision {
    const t0 = performance.now();
    const st = this.session(q.session);
    let run: { texts: (string | undefined)[]; complete: boolean; prepareOnly: boolean } | null = null;
    if (q.protocol === "extended") {
      const raw = q.requestBytes?.() ?? EMPTY;
      // A run that starts with a Parse: its text is the request's own, decoded once.
      run = st.runTexts(raw, raw[0] === 80 ? q.sql() : undefined);
      if (raw.length > 6 && raw[5] === 0) {
        // The server never saw an unnamed Parse the cache answered: a Bind of that statement alone cannot run there.
        if (raw[0] === 80) st.unnamedAnswered = false;
        else if (raw[0] === 66 && st.unnamedAnswered && raw[6] === 0) return UNNAMED_GONE;
      }
    }
    let text = "";
    let first: Known | undefined;
    if (run === null && q.txStatus !== "I") {
      // A simple Query in a transaction (nothing there is served): a statement of a known template is found by its bytes, nothing decoded.
      // Outside one, a read may be served: its text is looked up first (a hit's way), then its template.
      const l = this.memo.templated(q, st.lastTemplate);
      st.lastTemplate = l ?? null;
      if (l !== undefined) first = withEffects(l.value, q.effects?.() ?? settingsEffects(q.sql()));
    }
    if (first === undefined) text = q.sql();
    // The request's own views (parse tree, the proxy's session-effects scan), when the text is the request's.
    let own: QueryCtx | null = q;
    if (first === undefined && text === "" && q.protocol === "extended") {
      // A Bind of a statement the proxy keeps no text of (session mode, the unnamed one): the text it was prepared with.
      const raw = q.requestBytes?.() ?? EMPTY;
      if (raw[0] !== 66) return; // 'B'
      const prepared = st.statementText(raw);
      if (prepared === undefined) {
        // Not seen (the list outgrew its bound): it may write anything or change the session.
        this.wrote(st, "all", q.session.id);
        st.unknown = true;
        return;
      }
      text = prepared;
      own = null;
    }
    if (first === undefined) {
      if (text === "") return;
      first = this.memo.known(text, own, st.lastTemplate);
      // A transaction's first statements come outside one (BEGIN): the statement after it is looked for after its template.
      st.lastTemplate = first.learned ?? null;
    }
    let a = first.analysis;
    let fx = first.fx;
    // Most statements change no setting: one shared empty list rather than one per request.
    let changes: readonly string[] = fx & SETTINGS ? [text || q.sql()] : NO_CHANGES;
    if (run !== null) {
      // Every statement of an extended run counts for writes and settings, not only the first.
      if ((!run.complete && !run.prepareOnly) || run.texts.some((t) => t === undefined)) {
        // Messages not seen yet (the run continues in later bytes) or a statement never prepared here: anything may follow.
        this.wrote(st, "all", q.session.id);
        st.unknown = true;
        this.pending.set(q, { analysis: a, text, fx, changes });
        return;
      }
      for (const t of run.texts) {
        if (t === text) continue;
        const k = this.memo.known(t!, null);
        a = merge(a, k.analysis, k.fx);
        fx |= k.fx;
        if (k.fx & SETTINGS) changes = [...changes, t!];
      }
    }
    const writes = a.writes === "all" || a.writes.length > 0;
    if (writes || a.change !== SessionChange.None || fx & FOLLOWED || st.openWrites !== null || st.changesPending()) {
      if (a.ddl) {
        st.openDdl = true;
        this.relations.forget();
      }
      if (writes) this.wrote(st, this.relations.writeDeps(q.session.database, a.writes), q.session.id);
      st.sent(a, fx);
      this.pending.set(q, { analysis: a, text, fx, changes });
      return;
    }
    if (!a.cacheable) {
      this.counters.uncacheable++;
      return;
    }
    if (q.txStatus !== "I" || !st.usable()) {
      this.counters.bypassed++;
      return;
    }
    if (text === "") text = q.sql();
    const shape = first.shape ?? this.memo.lexed(text, first);
    if (shape.multi || shape.movingDate || shape.hints?.cache === false) {
      this.counters.uncacheable++;
      return;
    }
    // Views to their base tables, partitions and parents: until the catalog has answered, no cache.
    const tables = this.relations.readDeps(q.session.database, a.reads);
    if (tables === null) {
      this.counters.bypassed++;
      return;
    }
    // wal: only while the database's stream runs can a write made elsewhere be noticed.
    const walGen = this.wal === null ? 0 : this.wal.generation(q.session.database);
    if (this.wal !== null && walGen === 0) {
      this.counters.bypassed++;
      return;
    }
    const ttlSecs = this.ttlFor(q, shape, a);
    if (ttlSecs === 0) {
      this.counters.uncacheable++;
      return;
    }
    const form = requestForm(q.requestBytes?.() ?? EMPTY, q.protocol, q.preparedStatement?.() ?? null);
    if (form === null) {
      this.counters.uncacheable++;
      return;
    }
    let key = `${st.key}\u0000${form.formats}\u0000${shape.structure}`;
    for (const slot of shape.slots) {
      const v = typeof slot === "number" ? form.params[slot - 1] : slot;
      if (v === undefined || (typeof slot === "number" && MOVING_DATE.test(v))) {
        this.counters.uncacheable++;
        return;
      }
      key += `\u0000${v.length}:${v}`;
    }
    // With standbys: a node that has replayed the newest commit known to have written these tables (the primary if none has).
    const minLsn = this.commits === null ? 0 : this.positions.needed(tables, this.wal?.floor(q.session.database) ?? 0);
    const p: Pending = { analysis: a, text, fx, changes, fill: { key, tables, seen: this.store.snapshot(tables), ttlMs: ttlSecs * 1000, structure: shape.structure, walGen, anyNode: this.commits !== null, known: first } };
    this.pending.set(q, p);
    // Kept either way: a hit the proxy cannot use yet (earlier replies still owed) goes to the server and refills.
    q.captureReply?.(this.s.max_result_bytes);
    const route: QueryDecision | undefined = minLsn > 0 ? { kind: "route", target: "default", minLsn } : undefined;
    if (!form.canServe) return route;
    const e = this.store.tiers.get(key, Date.now());
    if (e !== undefined) {
      const reply = replyFor(e, form);
      if (reply !== null) {
        p.answered = true;
        if (form.parse) st.unnamedAnswered = true;
        const c = this.counters;
        c.hitMicros[c.hitCount++ % c.hitMicros.length] = (performance.now() - t0) * 1000;
        return { kind: "reply", messages: reply, source: "query_cache" };
      }
    }
    return route;
  }

  onResult(r: ResultCtx): void {
    const p = this.pending.get(r.query);
    if (p === undefined) return;
    this.pending.delete(r.query);
    // A hit: nothing ran, nothing to learn or store.
    if (r.answeredBy !== undefined) return;
    const st = this.sessions.get(r.query.session.id);
    if (st === undefined) return;
    const a = p.analysis;
    const failed = r.error !== undefined;
    st.answered(a, p.fx, p.changes, r.txStatus, r.commandTag, failed);
    if (st.openWrites !== null && r.txStatus === "I") {
      // The transaction ended (committed or not): what it wrote is dropped again, after the fact.
      const w = st.openWrites;
      st.openWrites = null;
      this.store.written(w);
      if (this.commits !== null) {
        // The position read after the commit (read-your-writes); not past the previous one: not known.
        const lsn = this.commits.session(r.query.session.id);
        this.positions.wrote(w, lsn > st.lsnBefore ? lsn : UNKNOWN_LSN);
      }
      if (st.openDdl) this.relations.forget();
      st.openDdl = false;
    }
    const f = p.fill;
    if (f === undefined || failed || r.txStatus !== "I") return;
    const primary = this.primary();
    if (primary !== "" && r.node !== primary && !f.anyNode) {
      this.counters.fromStandby++;
      return;
    }
    // The stream broke while the request ran: a commit it would have reported may be missing.
    if (this.wal !== null && !this.wal.unbroken(r.query.session.database, f.walGen)) return;
    if (r.reply === undefined) {
      this.counters.tooLarge++;
      return;
    }
    const kept = cacheable(r.reply);
    if (kept === null) return;
    // From the text (kept with it when it is remembered), not through the proxy's own memo of texts, which one-off texts would churn.
    const fingerprint = (f.known.fingerprint ??= fingerprintOf(p.text));
    const stored = this.store.fill(f.key, { ...kept, tables: f.tables, fingerprint, structure: f.structure, expiresAt: Date.now() + f.ttlMs, hits: 0 }, f.seen);
    if (stored) {
      this.counters.fills++;
      if (primary !== "" && r.node !== primary) this.counters.standbyFills++;
    }
  }

  onClose(s: SessionCtx): void {
    const st = this.sessions.get(s.id);
    if (st === undefined) return;
    this.sessions.delete(s.id);
    if (st.openWrites !== null) this.store.written(st.openWrites);
  }

  /** What the module keeps besides the tiers (GET /cache). */
  bookkeeping(): Bookkeeping {
    let statements = 0;
    let statementBytes = 0;
    for (const st of this.sessions.values()) {
      const s = st.statementStats();
      statements += s.entries;
      statementBytes += s.bytes;
    }
    return {
      ...this.memo.stats(),
      sessions: { entries: this.sessions.size, statements, statement_bytes: statementBytes, max_statement_bytes_per_session: STATEMENTS_MAX_BYTES },
      relations: { entries: this.relations.size, max_entries_per_database_and_kind: NAMES_MAX },
      table_generations: { entries: this.store.generations, max_entries: GENERATIONS_MAX },
      write_positions: { entries: this.positions.size, max_entries: POSITIONS_MAX },
    };
  }

  onServerEvent(e: ClusterEvent): void {
    // A new primary may not have every commit the old one acknowledged: nothing cached stays.
    if (e.type === "PrimaryChanged") {
      this.store.written("all");
      this.wal?.primaryChanged();
    }
  }

  private session(s: SessionCtx): SessionKey {
    let st = this.sessions.get(s.id);
    if (st === undefined) {
      this.sessions.set(s.id, (st = new SessionKey(s)));
      // wal: the database's stream starts with its first session, before its first cacheable read.
      this.wal?.generation(s.database);
    }
    return st;
  }

  /** A request that writes: drop at once what read those tables (and again when its transaction ends). */
  private wrote(st: SessionKey, tables: readonly string[] | "all", session: number): void {
    // Its commit must be seen past this position (the session's previous commit).
    if (st.openWrites === null) st.lsnBefore = this.commits?.session(session) ?? 0;
    if (tables === "all" || st.openWrites === "all") st.openWrites = "all";
    else {
      st.openWrites ??= new Set();
      for (const t of tables) st.openWrites.add(t);
    }
    this.store.written(tables);
  }

  /** Seconds to keep this statement's reply; 0: not cached (a rule, a hint, or allow-list mode). */
  private ttlFor(q: QueryCtx, shape: Shape, a: Analysis): number {
    const rule = this.s.rules.length === 0 ? undefined : this.ruleFor(q, a);
    if (rule !== undefined && !rule.cache) return 0;
    const hinted = shape.hints?.cache === true;
    if (this.s.mode === "allow_list" && (rule === undefined || !rule.cache) && !hinted) return 0;
    return shape.hints?.ttlSecs ?? (rule !== undefined && rule.ttl_secs > 0 ? rule.ttl_secs : this.s.ttl_secs);
  }

  private ruleFor(q: QueryCtx, a: Analysis): CacheRule | undefined {
    let fp: string | null = null;
    for (const r of this.s.rules) {
      if (r.user !== "" && r.user !== q.session.user) continue;
      if (r.table !== "" && !a.reads.includes(r.table)) continue;
      if (r.fingerprint !== "" && r.fingerprint !== (fp ??= q.fingerprint())) continue;
      return r;
    }
    return undefined;
  }
}

/** Two statements of one request as one (`bfx`: the second's session effects): what either writes or changes, never cacheable. */
function merge(a: Analysis, b: Analysis, bfx: Effect): Analysis {
  if (b.writes !== "all" && b.writes.length === 0 && b.change === SessionChange.None && !b.txControl && (bfx & FOLLOWED) === 0) return a.statements > 1 ? a : { ...a, cacheable: false, reason: "several statements", statements: 2 };
  const writes = a.writes === "all" || b.writes === "all" ? "all" : [...new Set([...a.writes, ...b.writes])];
  return {
    cacheable: false,
    reason: "several statements",
    reads: [...new Set([...a.reads, ...b.reads])],
    writes,
    change: a.change | b.change,
    txControl: a.txControl || b.txControl,
    ddl: a.ddl || b.ddl,
    statements: a.statements + b.statements,
  };
}

const queryCache: ProxyModule<QueryCacheSettings> = {
  name: "query_cache",
  feature: "query-cache",
  version: "0.1.0",
  apiVersion: HOOKS_API_VERSION,
  config,
  configure,
  async start(settings, host) {
    await loadParser();
    const cache = new QueryCache(settings, host.catalogQuery?.bind(host), () => host.nodes().find((n) => n.role === "primary")?.name ?? "");
    if (settings.invalidation === "wal")
      cache.wal = new WalInvalidation(host, { publication: settings.wal_publication, slotPrefix: settings.wal_slot_prefix, timeoutMs: settings.wal_timeout_secs * 1000 }, (tables, lsn) => {
        cache.store.written(tables);
        cache.positions.wrote(tables, lsn);
      });
    // Standbys: reads may be served by them, and their replies stored once they are known fresh enough.
    if (host.nodes().some((n) => n.role === "standby")) cache.commits = host.trackCommits();
    registerAdmin(host, cache.store, cache.counters, { l1: settings.l1_max_bytes, l2: settings.l2_max_bytes }, cache.wal, () => cache.bookkeeping());
    return cache;
  },
};

export default queryCache;
