// The schema-routing decision per request: tables touched -> rule, then data temperature, then workload class; cached by text.

import { LRUCache } from "lru-cache";
import type { QueryCtx, RouteHint } from "../../core/hooks.ts";
import { analyzeQuery, type QueryShape } from "../../sql/fingerprint.ts";
import { parseHintsBytes } from "../../sql/hints.ts";
import { tablesTouched } from "../../sql/tables.ts";
import { compilePattern, compileSchemaPattern, WORKLOAD_CLASSES, type SchemaRoutingSettings, type WorkloadClass } from "./config.ts";

type Matcher = (schema: string, name: string) => boolean;

/** Reads of one table as the proxy saw them. */
export interface TableStat {
  readonly name: string;
  reads: number;
  /** clock.now (ms) of the last read. */
  lastRead: number;
  /** False once evicted from the tracker: plans holding it fetch a fresh one. */
  live: boolean;
}

/** What is known about one query text, computed once. */
interface Plan {
  /** Only reads are routed (the router sends anything that may write to the primary anyway). */
  readonly read: boolean;
  /** Index of the rule of the first table a rule matches, -1 for none. */
  readonly rule: number;
  /** A table matches temperature.cold_tables. */
  readonly cold: boolean;
  /** Index into WORKLOAD_CLASSES. */
  readonly workload: number;
  /** Tracked tables (observed temperature only; null when not observing or no table is named). */
  readonly tables: TableStat[] | null;
}

const NOT_READ: Plan = Object.freeze({ read: false, rule: -1, cold: false, workload: 0, tables: null });
/** A text carrying a routing hint comment (route=..., node=..., max_lag=...): the hint decides, not the schema. */
const HINTED: Plan = Object.freeze({ read: false, rule: -1, cold: false, workload: 0, tables: null });
const W_ANALYTICS = 0, W_VECTOR = 1, W_OLTP = 2;

/** Why a request was routed as it was (indexes into SchemaRouter.decisions). */
export const REASONS = ["rule", "cold_rule", "cold_observed", "analytics", "vector", "oltp", "none", "not_read", "in_transaction", "hinted"] as const;
const R_RULE = 0, R_COLD_RULE = 1, R_COLD_OBSERVED = 2, R_WORKLOAD = 3, R_NONE = 6, R_NOT_READ = 7, R_IN_TX = 8, R_HINTED = 9;

/** The statement's facts: the session's shared, cached QueryShape when the context offers it (RequestCtx.facts()), else one lexer pass. */
function shapeOf(q: QueryCtx): QueryShape {
  const facts = (q as QueryCtx & { facts?: () => QueryShape }).facts;
  return typeof facts === "function" ? facts.call(q) : analyzeQuery(q.sql());
}

/** Tables seen in reads: a bounded map; the least recently read leave first. */
export class Temperatures {
  readonly map = new Map<string, TableStat>();
  /** Last-read time assumed for a table not in the map: module start, or the newest read evicted since. */
  private floor: number;

  constructor(
    readonly coldAfterMs: number,
    private readonly max: number,
    now: number,
  ) {
    this.floor = now;
  }

  stat(name: string): TableStat {
    let s = this.map.get(name);
    if (s === undefined) {
      if (this.map.size >= this.max) this.evict();
      s = { name, reads: 0, lastRead: this.floor, live: true };
      this.map.set(name, s);
    }
    return s;
  }

  /** Record a read of `tables` at `now`; true when one of them was cold (not read for coldAfterMs) before it. */
  read(tables: TableStat[], now: number): boolean {
    let cold = false;
    for (let i = 0; i < tables.length; i++) {
      let s = tables[i]!;
      if (!s.live) s = tables[i] = this.stat(s.name);
      if (now - s.lastRead > this.coldAfterMs) cold = true;
      s.lastRead = now;
      s.reads++;
    }
    return cold;
  }

  isCold(s: TableStat, now: number): boolean {
    return now - s.lastRead > this.coldAfterMs;
  }

  /** Drop the least recently read tenth; what is unknown later counts as read no earlier than they were. */
  private evict(): void {
    const all = [...this.map.values()].sort((a, b) => a.lastRead - b.lastRead);
    const n = Math.max(1, Math.floor(all.length / 10));
    for (let i = 0; i < n; i++) {
      const s = all[i]!;
      s.live = false;
      this.map.delete(s.name);
      if (s.lastRead > this.floor) this.floor = s.lastRead;
    }
  }
}

export class SchemaRouter {
  /** Requests per reason (REASONS order). */
  readonly decisions = new Float64Array(REASONS.length);
  /** Requests routed by each rule. */
  readonly ruleDecisions: Float64Array;
  hits = 0;
  misses = 0;
  readonly temperatures: Temperatures | null;

  private readonly byText: LRUCache<string, Plan>;
  /** Plans by fingerprint: texts differing only in literals share one (no second table scan). */
  private readonly byShape: LRUCache<string, Plan>;
  private readonly rules: { match: Matcher[]; hint: RouteHint }[];
  private readonly cold: Matcher[];
  private readonly coldHint: RouteHint | undefined;
  private readonly workloadHints: (RouteHint | undefined)[];

  constructor(
    readonly settings: SchemaRoutingSettings,
    /** A clock in ms (performance.now() scale): the core's coarse clock in the proxy. */
    private readonly clock: { readonly now: number },
  ) {
    const hints = new Map<string, RouteHint>();
    const hintFor = (group: string): RouteHint => {
      let h = hints.get(group);
      if (h === undefined) {
        const nodes = settings.groups[group];
        // With `nodes` the router ignores `target`; "standby" (not "default") marks a wish even with the split off.
        h = Object.freeze(nodes === undefined ? { kind: "route", target: group } : { kind: "route", target: "standby", nodes: Object.freeze([...nodes]) });
        hints.set(group, h);
      }
      return h;
    };
    this.rules = settings.rules.map((r) => ({ match: [...r.tables.map(compilePattern), ...r.schemas.map(compileSchemaPattern)], hint: hintFor(r.group) }));
    this.ruleDecisions = new Float64Array(this.rules.length);
    const t = settings.temperature;
    this.cold = t.cold_tables.map(compilePattern);
    this.coldHint = t.cold_group === "" ? undefined : hintFor(t.cold_group);
    this.temperatures = t.observe ? new Temperatures(t.cold_after_secs * 1000, t.max_tables, clock.now) : null;
    this.workloadHints = WORKLOAD_CLASSES.map((c: WorkloadClass) => (settings.workloads[c] === undefined ? undefined : hintFor(settings.workloads[c]!)));
    this.byText = new LRUCache({ max: settings.cache_size });
    this.byShape = new LRUCache({ max: settings.cache_size });
  }

  /** The route for one request, or undefined to leave it to normal routing. */
  decide(q: QueryCtx): RouteHint | undefined {
    const text = q.sql();
    let plan = this.byText.get(text);
    if (plan === undefined) plan = this.miss(q, text);
    else this.hits++;
    if (!plan.read) {
      this.decisions[plan === HINTED ? R_HINTED : R_NOT_READ]++;
      return undefined;
    }
    const observedCold = plan.tables !== null && this.temperatures!.read(plan.tables, this.clock.now);
    if (q.txStatus !== "I") {
      // Inside a transaction block the session keeps its server: no route to give.
      this.decisions[R_IN_TX]++;
      return undefined;
    }
    if (plan.rule >= 0) {
      this.decisions[R_RULE]++;
      this.ruleDecisions[plan.rule]++;
      return this.rules[plan.rule]!.hint;
    }
    if (plan.cold || observedCold) {
      this.decisions[plan.cold ? R_COLD_RULE : R_COLD_OBSERVED]++;
      return this.coldHint;
    }
    const hint = this.workloadHints[plan.workload];
    this.decisions[hint === undefined ? R_NONE : R_WORKLOAD + plan.workload]++;
    return hint;
  }

  private miss(q: QueryCtx, text: string): Plan {
    this.misses++;
    const b = q.sqlBytes();
    // Keyed by text only: the fingerprint ignores comments, so a hinted text shares its shape with an unhinted one.
    if (parseHintsBytes(b, 0, b.length) !== null) {
      this.byText.set(text, HINTED);
      return HINTED;
    }
    const shape = shapeOf(q);
    let plan = this.byShape.get(shape.fingerprint);
    if (plan === undefined) {
      plan = this.plan(text, shape);
      this.byShape.set(shape.fingerprint, plan);
    }
    this.byText.set(text, plan);
    return plan;
  }

  private plan(text: string, shape: QueryShape): Plan {
    if (shape.kind !== "read") return NOT_READ;
    const names = tablesTouched(text);
    let rule = -1, cold = false;
    const qualified: string[] = [];
    for (const full of names) {
      const [schema, name] = this.split(full);
      qualified.push(schema + "." + name);
      if (rule < 0) rule = this.rules.findIndex((r) => r.match.some((m) => m(schema, name)));
      if (!cold) cold = this.cold.some((m) => m(schema, name));
    }
    const workload = shape.vector ? W_VECTOR : shape.analytics ? W_ANALYTICS : W_OLTP;
    const t = this.temperatures;
    return { read: true, rule, cold, workload, tables: t !== null && qualified.length > 0 ? qualified.map((n) => t.stat(n)) : null };
  }

  /** (schema, table) of a name as tablesTouched gives it; a bare name is in default_schema; a database prefix is dropped. */
  private split(full: string): [string, string] {
    const parts = full.split(".");
    if (parts.length === 1) return [this.settings.default_schema, parts[0]!];
    return [parts[parts.length - 2]!, parts[parts.length - 1]!];
  }

  /** Cached texts (for the admin view). */
  cacheSize(): number {
    return this.byText.size;
  }
}
