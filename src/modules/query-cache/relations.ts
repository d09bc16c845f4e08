// What a relation name stands for, from the catalog of the primary: views resolved to their base tables, partitions and inheritance both ways, the tables a write reaches.

import { BoundedMap } from "../../util/bounded-map.ts";

/** Runs a catalog query in a database (ModuleHost.catalogQuery). */
export type CatalogQuery = (database: string, sql: string, params?: string[]) => Promise<(string | null)[][]>;

/** What reading a relation depends on. */
interface ReadDeps {
  /** Tables whose writes change what reading it returns (itself included). */
  readonly tables: readonly string[];
  /** False: a view calling functions that are not immutable, or a foreign table: never cached. */
  readonly cacheable: boolean;
}

/** Every relation a name can mean (any schema), views followed through their rules, inheritance both ways. */
const READ_SQL = `
WITH RECURSIVE edges(src, dst) AS (
  SELECT r.ev_class, d.refobjid FROM pg_rewrite r
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
   WHERE d.refobjid <> r.ev_class
  UNION ALL SELECT inhparent, inhrelid FROM pg_inherits
  UNION ALL SELECT inhrelid, inhparent FROM pg_inherits
), walk(root, oid, depth) AS (
  SELECT c.relname::text, c.oid, 0 FROM pg_class c WHERE c.relname = ANY($1::text[])
  UNION
  SELECT w.root, e.dst, w.depth + 1 FROM walk w JOIN edges e ON e.src = w.oid WHERE w.depth < 16
)
SELECT DISTINCT w.root, c.relname::text, c.relkind::text,
  (c.relkind = 'v' AND EXISTS (SELECT 1 FROM pg_rewrite r
     JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass
     JOIN pg_proc p ON p.oid = d.refobjid
    WHERE r.ev_class = c.oid AND p.provolatile <> 'i'))::text
FROM walk w JOIN pg_class c ON c.oid = w.oid`;

/** Tables a write to a name reaches besides itself: foreign keys that cascade, and whether triggers or rules run. */
const WRITE_SQL = `
SELECT t.relname::text, 'fk', ch.relname::text FROM pg_constraint k
  JOIN pg_class t ON t.oid = k.confrelid JOIN pg_class ch ON ch.oid = k.conrelid
 WHERE k.contype = 'f' AND t.relname = ANY($1::text[]) AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))
UNION ALL
SELECT t.relname::text, 'trigger', '' FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
 WHERE NOT g.tgisinternal AND t.relname = ANY($1::text[])
UNION ALL
SELECT t.relname::text, 'rule', '' FROM pg_rewrite r JOIN pg_class t ON t.oid = r.ev_class
 WHERE r.ev_type <> '1' AND t.relname = ANY($1::text[])
UNION ALL
SELECT t.relname::text, 'inherit', p.relname::text FROM pg_inherits i
  JOIN pg_class t ON t.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
 WHERE t.relname = ANY($1::text[])`;

/** A failed lookup is tried again after this long; meanwhile the names are not cached. */
const RETRY_MS = 10_000;
/** Names kept per database and kind (read, write): beyond, the least recently used is forgotten and looked up again when it comes. */
export const NAMES_MAX = 50_000;
/** Failed lookups remembered (to wait before the next try). */
const FAILURES_MAX = 10_000;

export class Relations {
  /** database -> name -> read dependencies. */
  private readonly reads = new Map<string, BoundedMap<string, ReadDeps>>();
  /** database -> name -> tables a write reaches ("all": triggers or rules the proxy cannot see through). */
  private readonly writes = new Map<string, BoundedMap<string, readonly string[] | "all">>();
  private readonly inFlight = new Set<string>();
  private readonly failedUntil = new BoundedMap<string, number>(FAILURES_MAX);
  /** Bumped by forget(): answers to lookups started before are dropped. */
  private epoch = 0;
  lookups = 0;
  failures = 0;

  constructor(
    private readonly query: CatalogQuery | undefined,
    /** Table -> tables its triggers write, from the configuration: used instead of "all". */
    private readonly cascades: Readonly<Record<string, readonly string[]>>,
  ) {}

  /** The tables reading `names` depends on, or null while the catalog has not answered yet (or says never cache). */
  readDeps(database: string, names: readonly string[]): readonly string[] | null {
    if (this.query === undefined || names.length === 0) return names;
    const known = this.reads.get(database);
    if (names.length === 1) {
      // One relation (most reads): its list as it is, nothing built per request.
      const d = known?.get(names[0]!);
      if (d !== undefined) return d.cacheable ? d.tables : null;
    }
    const out = new Set<string>();
    const missing: string[] = [];
    for (const n of names) {
      const d = known?.get(n);
      if (d === undefined) missing.push(n);
      else if (!d.cacheable) return null;
      else for (const t of d.tables) out.add(t);
    }
    if (missing.length > 0) {
      this.lookup(database, missing, "read");
      return null;
    }
    return [...out];
  }

  /** The tables a write to `names` reaches: "all" while unknown, or when triggers or rules run there. */
  writeDeps(database: string, names: readonly string[] | "all"): readonly string[] | "all" {
    if (names === "all" || this.query === undefined) return names;
    const known = this.writes.get(database);
    // One table written (most writes): its list as it is.
    const one = names.length === 1 ? known?.get(names[0]!) : undefined;
    if (one !== undefined) return one;
    const out = new Set<string>();
    const missing: string[] = [];
    for (const n of names) {
      const d = known?.get(n);
      if (d === undefined) missing.push(n);
      else if (d === "all") return "all";
      else for (const t of d) out.add(t);
    }
    if (missing.length > 0) {
      this.lookup(database, missing, "write");
      return "all";
    }
    return [...out];
  }

  /** Names known, over databases and both kinds. */
  get size(): number {
    let n = 0;
    for (const m of this.reads.values()) n += m.size;
    for (const m of this.writes.values()) n += m.size;
    return n;
  }

  /** DDL ran: views, partitions, keys and triggers may differ now. */
  forget(): void {
    this.epoch++;
    this.reads.clear();
    this.writes.clear();
  }

  private lookup(database: string, names: string[], kind: "read" | "write"): void {
    const now = Date.now();
    const todo = names.filter((n) => {
      const k = `${kind}\u0000${database}\u0000${n}`;
      return !this.inFlight.has(k) && (this.failedUntil.get(k) ?? 0) <= now;
    });
    if (todo.length === 0) return;
    const keys = todo.map((n) => `${kind}\u0000${database}\u0000${n}`);
    for (const k of keys) this.inFlight.add(k);
    this.lookups++;
    const run = kind === "read" ? this.fetchReads(database, todo) : this.fetchWrites(database, todo);
    run
      .catch(() => {
        this.failures++;
        for (const k of keys) this.failedUntil.set(k, Date.now() + RETRY_MS);
      })
      .finally(() => {
        for (const k of keys) this.inFlight.delete(k);
      });
  }

  private async fetchReads(database: string, names: string[]): Promise<void> {
    const epoch = this.epoch;
    const rows = await this.query!(database, READ_SQL, [pgArray(names)]);
    if (epoch !== this.epoch) return;
    const found = new Map<string, { tables: Set<string>; cacheable: boolean }>();
    for (const n of names) found.set(n, { tables: new Set([n]), cacheable: true });
    for (const [root, relname, relkind, volatile] of rows) {
      const d = found.get(root ?? "");
      if (d === undefined || relname === null) continue;
      d.tables.add(relname);
      if (relkind === "f" || volatile === "true") d.cacheable = false;
    }
    let m = this.reads.get(database);
    if (m === undefined) this.reads.set(database, (m = new BoundedMap(NAMES_MAX)));
    for (const [n, d] of found) m.set(n, { tables: [...d.tables], cacheable: d.cacheable });
  }

  private async fetchWrites(database: string, names: string[]): Promise<void> {
    const epoch = this.epoch;
    const rows = await this.query!(database, WRITE_SQL, [pgArray(names)]);
    if (epoch !== this.epoch) return;
    const found = new Map<string, Set<string> | "all">();
    for (const n of names) found.set(n, new Set([n, ...(this.cascades[n] ?? [])]));
    for (const [table, what, other] of rows) {
      const d = found.get(table ?? "");
      if (d === undefined || d === "all") continue;
      if (what === "trigger" || what === "rule") {
        if (this.cascades[table!] === undefined) found.set(table!, "all");
      } else if (other !== null) d.add(other);
    }
    let m = this.writes.get(database);
    if (m === undefined) this.writes.set(database, (m = new BoundedMap(NAMES_MAX)));
    for (const [n, d] of found) m.set(n, d === "all" ? "all" : [...d]);
  }
}

/** A text[] literal of names. */
function pgArray(names: readonly string[]): string {
  return `{${names.map((n) => `"${n.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`).join(",")}}`;
}
