// What a client's session looks like from inside, and the ways another client may try to change it: shared by the isolation tests.

import pg from "pg";
import { PG_HOST, PG_PORT } from "../support/proxy.ts";

/** One row describing the session as the server has it. */
export const PROBE_SQL = `SELECT current_user AS cu, session_user AS su, current_setting('search_path') AS sp,
  current_setting('statement_timeout') AS st, current_setting('application_name') AS app,
  current_setting('app.tenant', true) AS tenant, current_setting('hp_iso.victim', true) AS mine,
  (SELECT coalesce(string_agg(name, ','), '') FROM pg_prepared_statements WHERE name !~ '^hp[_.]') AS prepared,
  (SELECT count(*)::int FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temps,
  (SELECT count(*)::int FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') AS locks,
  (SELECT coalesce(string_agg(c, ','), '') FROM pg_listening_channels() c) AS listening,
  (SELECT count(*)::int FROM pg_cursors WHERE is_holdable) AS cursors`;

export interface Probe {
  cu: string;
  su: string;
  sp: string;
  st: string;
  app: string;
  tenant: string | null;
  mine: string | null;
  prepared: string;
  temps: number;
  locks: number;
  listening: string;
  cursors: number;
}

/** The state a victim set up for itself (application_name at login, then SETs). */
export interface Expected {
  user: string;
  searchPath: string;
  statementTimeout: string;
  app: string;
  mine: string | null;
}

/** Differences between what the session shows and what its client set up: each one a leak. */
export function leaks(p: Probe, e: Expected): string[] {
  const out: string[] = [];
  const check = (what: string, got: unknown, want: unknown) => {
    if (got !== want) out.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  check("current_user", p.cu, e.user);
  check("session_user", p.su, e.user);
  check("search_path", p.sp, e.searchPath);
  check("statement_timeout", p.st, e.statementTimeout);
  check("application_name", p.app, e.app);
  check("hp_iso.victim", p.mine ?? "", e.mine ?? "");
  check("app.tenant", p.tenant ?? "", "");
  check("prepared statements", p.prepared, "");
  check("temp tables", p.temps, 0);
  check("advisory locks", p.locks, 0);
  check("listening", p.listening, "");
  check("holdable cursors", p.cursors, 0);
  return out;
}

/** Objects the polluting statements use: a role to become, functions and a procedure that change state out of sight, a table. */
export async function createFixtures(): Promise<void> {
  const c = new pg.Client({ host: PG_HOST, port: PG_PORT, user: "postgres", database: "test" });
  await c.connect();
  try {
    await c.query(`DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hp_iso_x') THEN CREATE ROLE hp_iso_x; END IF; END$$`);
    await c.query(`CREATE TABLE IF NOT EXISTS hp_iso_log (a int)`);
    await c.query(`GRANT ALL ON hp_iso_log TO PUBLIC`);
    await c.query(`CREATE OR REPLACE FUNCTION hp_iso_pollute() RETURNS int LANGUAGE plpgsql AS $f$
      BEGIN
        PERFORM set_config('app.tenant', '66', false);
        PERFORM set_config('search_path', 'fn_polluted', false);
        SET statement_timeout = '4321ms';
        BEGIN EXECUTE 'PREPARE fn_prep AS SELECT 1'; EXCEPTION WHEN duplicate_prepared_statement THEN NULL; END;
        EXECUTE 'LISTEN fn_chan';
        PERFORM pg_advisory_lock(4242);
        CREATE TEMP TABLE IF NOT EXISTS fn_temp (a int);
        RETURN 1;
      END $f$`);
    await c.query(`CREATE OR REPLACE FUNCTION hp_iso_dealloc() RETURNS int LANGUAGE plpgsql AS $f$
      BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END $f$`);
    await c.query(`CREATE OR REPLACE FUNCTION hp_iso_role() RETURNS text LANGUAGE sql AS $f$ SELECT set_config('role', 'hp_iso_x', false) $f$`);
    await c.query(`CREATE OR REPLACE PROCEDURE hp_iso_proc() LANGUAGE plpgsql AS $f$
      BEGIN SET search_path = proc_polluted; PERFORM set_config('app.tenant', '77', false); END $f$`);
  } finally {
    await c.end();
  }
}

/**
 * Every way to change session state the isolation tests try. Each is one simple-protocol request
 * (texts joined by ";" run as one Query); `pins` marks the ones the client keeps its server for.
 */
export const POLLUTIONS: { name: string; sql: string; pins?: boolean }[] = [
  { name: "set_config role", sql: "SELECT set_config('role', 'hp_iso_x', false)" },
  { name: "set_config session_authorization", sql: "SELECT set_config('session_authorization', 'hp_iso_x', false)" },
  { name: "set_config tenant", sql: "SELECT set_config('app.tenant', '7', false)" },
  { name: "set_config search_path", sql: "SELECT set_config('search_path', 'sc_polluted', false)" },
  { name: "set_config statement_timeout", sql: "SELECT set_config('statement_timeout', '4321ms', false)" },
  { name: "set_config qualified", sql: "SELECT pg_catalog.set_config('app.tenant', '8', false)" },
  { name: "set_config computed", sql: "SELECT set_config('app.' || 'tenant', (6 + 3)::text, false)" },
  { name: "set_config in a sql function", sql: "SELECT hp_iso_role()" },
  { name: "SET ROLE; RESET ALL", sql: "SET ROLE hp_iso_x; RESET ALL" },
  { name: "SET SESSION AUTHORIZATION; RESET ALL", sql: "SET SESSION AUTHORIZATION hp_iso_x; RESET ALL" },
  { name: "SET ROLE", sql: "SET ROLE hp_iso_x" },
  { name: "SET with a comment", sql: "SET/**/search_path = cm_polluted" },
  { name: "SET tenant", sql: "SET app.tenant = '9'" },
  { name: "SET statement_timeout", sql: "SET statement_timeout = '4321ms'" },
  { name: "DO SET", sql: "DO $$BEGIN SET search_path = do_polluted; END$$" },
  { name: "DO set_config", sql: "DO $$BEGIN PERFORM set_config('app.tenant', '10', false); END$$" },
  { name: "DO PREPARE", sql: "DO $$BEGIN EXECUTE 'PREPARE do_prep AS SELECT 1'; EXCEPTION WHEN OTHERS THEN NULL; END$$" },
  { name: "DO LISTEN", sql: "DO $$BEGIN EXECUTE 'LISTEN do_chan'; END$$" },
  { name: "DO advisory lock", sql: "DO $$BEGIN PERFORM pg_advisory_lock(4243); END$$" },
  { name: "DO DEALLOCATE ALL", sql: "DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$" },
  { name: "DO temp table", sql: "DO $$BEGIN CREATE TEMP TABLE IF NOT EXISTS do_temp (a int); END$$" },
  { name: "function", sql: "SELECT hp_iso_pollute()" },
  { name: "quoted function", sql: `SELECT "hp_iso_pollute"()` },
  { name: "function DEALLOCATE ALL", sql: "SELECT hp_iso_dealloc()" },
  { name: "procedure", sql: "CALL hp_iso_proc()" },
  { name: "quoted advisory lock", sql: `SELECT "pg_try_advisory_lock"(4244)`, pins: true },
  { name: "SELECT INTO TEMP", sql: "SELECT 1 AS a INTO TEMP sit_temp", pins: true },
  { name: "CREATE TABLE pg_temp", sql: "CREATE TABLE pg_temp.pt_temp (a int)", pins: true },
  { name: "CREATE TEMP TABLE", sql: "CREATE TEMP TABLE ct_temp (a int)", pins: true },
  { name: "advisory lock", sql: "SELECT pg_advisory_lock(4245)", pins: true },
  { name: "PREPARE", sql: "PREPARE sql_prep AS SELECT 1", pins: true },
  { name: "LISTEN", sql: "LISTEN sql_chan", pins: true },
  { name: "WITH HOLD cursor", sql: "DECLARE hold_cur CURSOR WITH HOLD FOR SELECT 1", pins: true },
  { name: "INSERT; DEALLOCATE ALL", sql: "INSERT INTO hp_iso_log VALUES (1); DEALLOCATE ALL" },
  { name: "DEALLOCATE ALL; INSERT", sql: "DEALLOCATE ALL; INSERT INTO hp_iso_log VALUES (2)" },
  { name: "DEALLOCATE ALL", sql: "DEALLOCATE ALL" },
];

/** A DEALLOCATE of every proxy statement the server shows (names read from pg_prepared_statements). */
export async function deallocateOthers(c: pg.Client): Promise<number> {
  const r = await c.query<{ name: string }>("SELECT name FROM pg_prepared_statements");
  let refused = 0;
  for (const { name } of r.rows) {
    try {
      await c.query(`DEALLOCATE "${name.replaceAll('"', '""')}"`);
    } catch (e) {
      if ((e as { code?: string }).code === "26000") refused++;
      else throw e;
    }
  }
  return refused;
}
