// One server shared by two clients in transaction pooling: whatever one does to its session, the other never sees it.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { PG_PORT, pgClient, rejection } from "../support/clients.ts";
import * as F from "../support/frames.ts";
import { queryOnce } from "../support/wire.ts";
import { POLLUTIONS, PROBE_SQL, createFixtures, deallocateOthers, leaks, type Expected, type Probe } from "./probe.ts";

const T = 30_000;
let proxy: RunningProxy;

const VICTIM: Expected = { user: "postgres", searchPath: "v_path, public", statementTimeout: "31s", app: "victim", mine: "v" };
const NAMED = { name: "victim_stmt", text: "SELECT $1::int + 1 AS n" };

/** A client with its own settings and a named statement prepared through the proxy. */
async function victim(): Promise<pg.Client> {
  const v = await pgClient(proxy.port, { application_name: VICTIM.app });
  await v.query("SET hp_iso.victim = 'v'; SET search_path = v_path, public; SET statement_timeout = '31s'");
  expect((await v.query({ ...NAMED, values: [1] })).rows[0].n).toBe(2);
  return v;
}

/** The victim's session as it should be, and its named statement still working. */
async function expectIntact(v: pg.Client): Promise<void> {
  const p = (await v.query(PROBE_SQL)).rows[0] as Probe;
  expect(leaks(p, VICTIM)).toEqual([]);
  expect((await v.query({ ...NAMED, values: [41] })).rows[0].n).toBe(42);
}

beforeAll(async () => {
  await createFixtures();
  // One server: every client gets the same server connection in turn.
  proxy = await startProxy({ mode: "transaction", maxConnections: 1 });
});

afterAll(async () => {
  await proxy?.stop();
});

describe("a client's session state never reaches the next client on its server", () => {
  for (const p of POLLUTIONS) {
    test(p.name, async () => {
      const v = await victim();
      const polluter = await pgClient(proxy.port, { application_name: "polluter" });
      try {
        await polluter.query(p.sql).catch(() => {});
        // A pinned client keeps the only server until it leaves.
        if (p.pins) await polluter.end();
        await expectIntact(v);
        // Inside a transaction too.
        await v.query("BEGIN");
        await expectIntact(v);
        await v.query("COMMIT");
      } finally {
        await polluter.end().catch(() => {});
        await v.end();
      }
    }, T);
  }

  test("the same, polluting inside a transaction", async () => {
    const v = await victim();
    try {
      for (const p of POLLUTIONS) {
        if (p.pins || p.sql.includes("DEALLOCATE ALL;") || p.sql.includes("; DEALLOCATE")) continue;
        const polluter = await pgClient(proxy.port);
        await polluter.query("BEGIN");
        await polluter.query(p.sql).catch(() => {});
        await polluter.query("COMMIT").catch(() => {});
        await expectIntact(v);
        await polluter.end();
      }
    } finally {
      await v.end();
    }
  }, T);
});

describe("settings the proxy can see follow their own client, as PostgreSQL keeps them", () => {
  const cases: [string, string, string][] = [
    ["SELECT set_config('app.tenant', '7', false)", "current_setting('app.tenant')", "7"],
    ["SELECT set_config('role', 'hp_iso_x', false)", "current_user", "hp_iso_x"],
    ["SELECT set_config('session_authorization', 'hp_iso_x', false)", "session_user", "hp_iso_x"],
    ["SET ROLE hp_iso_x; RESET ALL", "current_user", "hp_iso_x"],
    ["SET SESSION AUTHORIZATION hp_iso_x; RESET ALL", "session_user", "hp_iso_x"],
    ["SET/**/search_path = cm_polluted", "current_setting('search_path')", "cm_polluted"],
    ["SET -- a comment\n statement_timeout = '4321ms'", "current_setting('statement_timeout')", "4321ms"],
  ];
  for (const [sql, expr, want] of cases) {
    test(sql, async () => {
      const a = await pgClient(proxy.port);
      const b = await pgClient(proxy.port);
      try {
        await a.query(sql);
        // b takes the server in between: a's setting went with a, not with the server.
        const seen = (await b.query(`SELECT ${expr} AS v, current_user AS cu, session_user AS su, current_setting('app.tenant', true) AS t`)).rows[0];
        expect([seen.cu, seen.su, seen.t ?? ""]).toEqual(["postgres", "postgres", ""]);
        expect((await a.query(`SELECT ${expr} AS v`)).rows[0].v).toBe(want);
      } finally {
        await a.end();
        await b.end();
      }
    }, T);
  }

  test("set_config with the value as a parameter follows its client (unnamed and named statements)", async () => {
    const a = await pgClient(proxy.port);
    const b = await pgClient(proxy.port);
    try {
      await a.query("SELECT set_config('app.tenant', $1, false)", ["it's 42"]);
      expect((await b.query("SELECT current_setting('app.tenant', true) AS t")).rows[0].t ?? "").toBe("");
      expect((await a.query("SELECT current_setting('app.tenant') AS t")).rows[0].t).toBe("it's 42");
      await a.query({ name: "tenant_set", text: "SELECT set_config('app.tenant', $1, false)", values: ["43"] });
      expect((await b.query("SELECT current_setting('app.tenant', true) AS t")).rows[0].t ?? "").toBe("");
      expect((await a.query("SELECT current_setting('app.tenant') AS t")).rows[0].t).toBe("43");
      await a.query({ name: "tenant_set", text: "SELECT set_config('app.tenant', $1, false)", values: ["44"] });
      expect((await a.query("SELECT current_setting('app.tenant') AS t")).rows[0].t).toBe("44");
      // Rolled back: not kept.
      await a.query("BEGIN");
      await a.query({ name: "tenant_set", values: ["45"], text: "SELECT set_config('app.tenant', $1, false)" });
      await a.query("ROLLBACK");
      expect((await a.query("SELECT current_setting('app.tenant') AS t")).rows[0].t).toBe("44");
      // NULL cannot be a SET: the server is reset instead, and nothing reaches b.
      await a.query("SELECT set_config('app.other', $1, false)", [null]);
      expect((await b.query("SELECT current_setting('app.tenant', true) AS t")).rows[0].t ?? "").toBe("");
    } finally {
      await a.end();
      await b.end();
    }
  }, T);

  test("set_config(..., true) lasts for its transaction only", async () => {
    const a = await pgClient(proxy.port);
    try {
      await a.query("BEGIN");
      await a.query("SELECT set_config('app.tenant', '5', true)");
      expect((await a.query("SELECT current_setting('app.tenant') AS v")).rows[0].v).toBe("5");
      await a.query("COMMIT");
      expect((await a.query("SELECT current_setting('app.tenant', true) AS v")).rows[0].v ?? "").toBe("");
    } finally {
      await a.end();
    }
  }, T);

  test("RESET ALL keeps the role; DISCARD ALL drops it", async () => {
    const a = await pgClient(proxy.port);
    try {
      await a.query("SET ROLE hp_iso_x; SET app.tenant = '3'; RESET ALL");
      let r = (await a.query("SELECT current_user AS cu, current_setting('app.tenant', true) AS t")).rows[0];
      expect([r.cu, r.t ?? ""]).toEqual(["hp_iso_x", ""]);
      await a.query("DISCARD ALL");
      r = (await a.query("SELECT current_user AS cu")).rows[0];
      expect(r.cu).toBe("postgres");
    } finally {
      await a.end();
    }
  }, T);
});

describe("the proxy's own statement names", () => {
  test("DEALLOCATE of a name the client did not create is 26000 and breaks no one", async () => {
    const v = await victim();
    const polluter = await pgClient(proxy.port);
    try {
      const names = (await polluter.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name ~ '^hp_'")).rows[0].n;
      expect(names).toBeGreaterThan(0);
      expect(await deallocateOthers(polluter)).toBe(names);
      const e = await rejection(polluter.query(`DEALLOCATE "hp_1"`));
      expect(e.code).toBe("26000");
      expect(e.message).toBe('prepared statement "hp_1" does not exist');
      // Inside a transaction it fails the transaction, as PostgreSQL's would.
      await polluter.query("BEGIN");
      expect((await rejection(polluter.query(`DEALLOCATE "hp_1"`))).code).toBe("26000");
      expect((await rejection(polluter.query("SELECT 1"))).code).toBe("25P02");
      await polluter.query("ROLLBACK");
      await expectIntact(v);
    } finally {
      await polluter.end();
      await v.end();
    }
  }, T);

  test("DEALLOCATE ALL in a DO block, a function, or next to another statement breaks no one", async () => {
    const v = await victim();
    const polluter = await pgClient(proxy.port);
    try {
      const all = ["DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$", "SELECT hp_iso_dealloc()", "SELECT 1; DEALLOCATE ALL", "DEALLOCATE ALL; SELECT 1"];
      for (const [i, sql] of all.entries()) {
        await polluter.query(sql);
        await expectIntact(v);
        // Inside one transaction the server stays with the polluter: a statement it prepares after the
        // DEALLOCATE (the same text as the victim's, so the same server-side statement) works.
        await polluter.query("BEGIN");
        await polluter.query(sql);
        expect((await polluter.query({ name: `p_stmt_${i}`, text: NAMED.text, values: [1] })).rows[0].n).toBe(2);
        await polluter.query("COMMIT");
        await expectIntact(v);
      }
    } finally {
      await polluter.end();
      await v.end();
    }
  }, T);

  test("a named statement used again after its server was reset is prepared again", async () => {
    const v = await victim();
    const polluter = await pgClient(proxy.port);
    try {
      for (let i = 0; i < 5; i++) {
        await polluter.query("DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$");
        expect((await v.query({ ...NAMED, values: [i] })).rows[0].n).toBe(i + 1);
      }
    } finally {
      await polluter.end();
      await v.end();
    }
  }, T);
});

describe("a multi-statement Query with DEALLOCATE is forwarded and answered whole", () => {
  const tags = (msgs: F.BackendMessage[]) => msgs.filter((m) => m.type === "C").map(F.commandTag);
  for (const [sql, a, want] of [
    ["INSERT INTO hp_iso_log VALUES ($A); DEALLOCATE ALL", 1, ["INSERT 0 1", "DEALLOCATE ALL"]],
    ["DEALLOCATE ALL; INSERT INTO hp_iso_log VALUES ($A)", 2, ["DEALLOCATE ALL", "INSERT 0 1"]],
  ] as [string, number, string[]][]) {
    test(sql, async () => {
      const marker = 1_000_000 + Math.floor(Math.random() * 1_000_000) * 10 + a;
      const direct = await queryOnce(PG_PORT, sql.replace("$A", String(-marker)));
      const viaProxy = await queryOnce(proxy.port, sql.replace("$A", String(marker)));
      expect(tags(direct)).toEqual(want);
      expect(tags(viaProxy)).toEqual(want);
      expect(F.types(viaProxy)).toBe(F.types(direct));
      const d = await pgClient(PG_PORT);
      try {
        const n = (await d.query("SELECT count(*)::int AS n FROM hp_iso_log WHERE a = $1", [marker])).rows[0].n;
        expect(n).toBe(1);
        await d.query("DELETE FROM hp_iso_log WHERE a IN ($1, $2)", [marker, -marker]);
      } finally {
        await d.end();
      }
    }, T);
  }

  test("DEALLOCATE ALL on its own is answered as PostgreSQL does", async () => {
    const direct = await queryOnce(PG_PORT, "DEALLOCATE ALL");
    const viaProxy = await queryOnce(proxy.port, "DEALLOCATE ALL");
    expect(F.types(viaProxy)).toBe(F.types(direct));
    expect(tags(viaProxy)).toEqual(["DEALLOCATE ALL"]);
  }, T);
});

describe("state no statement shows (a trigger) with reset_query_always", () => {
  let always: RunningProxy;
  beforeAll(async () => {
    const d = await pgClient(PG_PORT);
    try {
      await d.query(`CREATE TABLE IF NOT EXISTS hp_iso_trig (a int)`);
      await d.query(`CREATE OR REPLACE FUNCTION hp_iso_trig_fn() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM set_config('app.tenant', '99', false); EXECUTE 'LISTEN trig_chan'; RETURN NEW; END $f$`);
      await d.query(`CREATE OR REPLACE TRIGGER hp_iso_trig_t BEFORE INSERT ON hp_iso_trig FOR EACH ROW EXECUTE FUNCTION hp_iso_trig_fn()`);
    } finally {
      await d.end();
    }
    always = await startProxy({ mode: "transaction", maxConnections: 1, poolExtra: "reset_query_always = true" });
  });
  afterAll(async () => {
    await always?.stop();
  });

  test("an INSERT whose trigger sets a tenant and listens leaves nothing for the next client", async () => {
    const a = await pgClient(always.port);
    const b = await pgClient(always.port);
    try {
      for (let i = 0; i < 3; i++) {
        await a.query("INSERT INTO public.hp_iso_trig VALUES (1)");
        const r = (await b.query("SELECT current_setting('app.tenant', true) AS t, (SELECT count(*)::int FROM pg_listening_channels()) AS l")).rows[0];
        expect([r.t ?? "", r.l]).toEqual(["", 0]);
        // Settings the proxy follows stay with their client.
        await a.query("SET search_path = trig_path");
        expect((await a.query("SELECT current_setting('search_path') AS sp")).rows[0].sp).toBe("trig_path");
        expect((await b.query("SELECT current_setting('search_path') AS sp")).rows[0].sp).toBe('"$user", public');
      }
    } finally {
      await a.end();
      await b.end();
    }
  }, T);
});

test("a function listed in stateless_functions costs no reset (and its state is the lister's to answer for)", async () => {
  const listed = await startProxy({ mode: "transaction", maxConnections: 1, poolExtra: 'stateless_functions = ["HP_ISO_ROLE"]' });
  try {
    const a = await pgClient(listed.port);
    const b = await pgClient(listed.port);
    const pid = async (c: pg.Client) => (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;
    const before = await pid(b);
    // Not listed: the server is reset (DISCARD ALL keeps the backend; the role is gone).
    await a.query("SELECT hp_iso_pollute()");
    expect((await b.query("SELECT current_setting('app.tenant', true) AS t")).rows[0].t ?? "").toBe("");
    // Listed: taken at its word, nothing is reset.
    await a.query("SELECT hp_iso_role()");
    expect((await b.query("SELECT current_user AS u")).rows[0].u).toBe("hp_iso_x");
    expect(await pid(b)).toBe(before);
    await a.end();
    await b.end();
  } finally {
    await listed.stop();
  }
}, T);
