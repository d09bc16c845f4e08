// COPY FROM STDIN failing before and after CopyDone, in each pool mode: the server is released clean (RELIABILITY A18).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as F from "../support/frames.ts";
import * as W from "../support/wire.ts";
import { PG_PORT, startProxy, type RunningProxy } from "../support/proxy.ts";

const USER = { user: "postgres", database: "test" };
type Mode = "session" | "transaction" | "statement";

async function direct(sql: string): Promise<F.BackendMessage[]> {
  const r = await W.queryOnce(PG_PORT, sql);
  expect(F.errors(r)).toEqual([]);
  return r;
}

function suite(mode: Mode): void {
  describe(`A18 COPY FROM STDIN failures, ${mode} mode`, () => {
    // One proxy at a time: each mode's proxy is stopped before the next one starts.
    let proxy: RunningProxy;
    const table = `helios_a18_${mode}_${process.pid}`;
    const deferred = `${table}_d`;

    beforeAll(async () => {
      await direct(
        `drop table if exists ${table}, ${deferred}; create table ${table} (v int); ` +
          `create table ${deferred} (v int unique deferrable initially deferred)`,
      );
      // One server connection: a server kept by mistake shows up as another client waiting.
      proxy = await startProxy({ mode, maxConnections: 1, poolExtra: "wait_timeout_secs = 1" });
    });

    afterAll(async () => {
      W.RawConn.destroyAll();
      await proxy.stop();
      await direct(`drop table if exists ${table}, ${deferred}`);
    });

    /** Start COPY FROM STDIN with a simple query; returns once CopyInResponse arrived. */
    async function startCopy(conn: W.RawConn, target = table): Promise<void> {
      await conn.send(F.query(`copy ${target} from stdin`));
      expect(await conn.waitFor((c) => c.messages.slice(c.cursor).some((m) => m.type === "G"), 3000)).toBe(true);
      expect(F.types(conn.take())).toBe("G");
    }

    /** After the failure: the client's session is usable and nothing was written. */
    async function sessionClean(conn: W.RawConn, target = table): Promise<void> {
      const r = await conn.roundTrip(F.query(`select count(*) from ${target}`));
      expect(F.types(r)).toBe("TDCZ");
      expect(F.firstColumn(r)).toEqual(["0"]);
      expect(F.readyStatus(r.at(-1)!)).toBe("I");
    }

    /** Another client gets a server (the only one) while the first stays connected, unless pinned by session mode. */
    async function serverReleased(first: W.RawConn): Promise<void> {
      if (mode === "session") first.quit();
      const other = await W.login(proxy.port, USER);
      const r = await other.conn.roundTrip(F.query("select 'released'"), 1, 5000);
      expect(F.errors(r)).toEqual([]);
      expect(F.firstColumn(r)).toEqual(["released"]);
      other.conn.quit();
      first.quit();
    }

    test("CopyFail before CopyDone: ERROR 57014, one ReadyForQuery 'I'", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await startCopy(conn);
      const r = await conn.roundTrip(F.concat(F.copyData("1\n2\n"), F.copyFail("client gave up")));
      expect(F.types(r)).toBe("EZ");
      expect(F.errors(r).map((e) => e.code)).toEqual(["57014"]);
      expect(F.readyStatus(r.at(-1)!)).toBe("I");
      await sessionClean(conn);
      await serverReleased(conn);
    });

    test("bad row before CopyDone: ERROR 22P02, the late CopyDone is ignored", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await startCopy(conn);
      const r = await conn.roundTrip(F.copyData("1\nnot a number\n3\n"));
      expect(F.types(r)).toBe("EZ");
      expect(F.errors(r).map((e) => e.code)).toEqual(["22P02"]);
      await conn.send(F.concat(F.copyData("4\n"), F.copyDone()));
      await sessionClean(conn);
      await serverReleased(conn);
    });

    test("failing after CopyDone (deferred unique check): ERROR 23505, nothing written", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await startCopy(conn, deferred);
      const r = await conn.roundTrip(F.concat(F.copyData("1\n2\n1\n"), F.copyDone()));
      expect(F.types(r)).toBe("EZ");
      expect(F.errors(r).map((e) => e.code)).toEqual(["23505"]);
      await sessionClean(conn, deferred);
      await serverReleased(conn);
    });

    test("failing at CopyDone (unterminated last line is bad): ERROR 22P02", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await startCopy(conn);
      await conn.send(F.copyData("1\n2\n"));
      await Bun.sleep(50);
      expect(conn.messages.length).toBe(conn.cursor);
      const r = await conn.roundTrip(F.concat(F.copyData("nope"), F.copyDone()));
      expect(F.types(r)).toBe("EZ");
      expect(F.errors(r).map((e) => e.code)).toEqual(["22P02"]);
      await sessionClean(conn);
      await serverReleased(conn);
    });

    test("extended protocol: CopyFail then Sync gives one ERROR and one ReadyForQuery", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await conn.send(F.concat(F.parse("", `copy ${table} from stdin`), F.bind("", ""), F.execute(), F.flush()));
      expect(await conn.waitFor((c) => c.messages.slice(c.cursor).some((m) => m.type === "G"), 3000)).toBe(true);
      expect(F.types(conn.take())).toBe("12G");
      const r = await conn.roundTrip(F.concat(F.copyData("5\n"), F.copyFail("abandoned"), F.sync()));
      expect(F.types(r)).toBe("EZ");
      expect(F.errors(r).map((e) => e.code)).toEqual(["57014"]);
      await sessionClean(conn);
      await serverReleased(conn);
    });

    test("client gone in the middle of COPY: the backend does not stay in COPY and the pool still serves", async () => {
      const { conn } = await W.login(proxy.port, USER);
      await startCopy(conn);
      await conn.send(F.copyData("1\n2\n"));
      await Bun.sleep(50);
      conn.destroy();
      let busy = "1";
      for (let i = 0; i < 60 && busy !== "0"; i++) {
        await Bun.sleep(50);
        const r = await direct(`select count(*) from pg_stat_activity where query = 'copy ${table} from stdin' and state <> 'idle'`);
        busy = F.firstColumn(r)[0]!;
      }
      expect(busy).toBe("0");
      const other = await W.login(proxy.port, USER);
      await sessionClean(other.conn);
      other.conn.quit();
    });

    if (mode !== "statement") {
      test("COPY failing inside an explicit transaction: 'E' until ROLLBACK, then released", async () => {
        const { conn } = await W.login(proxy.port, USER);
        expect(F.readyStatus((await conn.roundTrip(F.query("begin"))).at(-1)!)).toBe("T");
        await startCopy(conn);
        const r = await conn.roundTrip(F.copyFail("no"));
        expect(F.errors(r).map((e) => e.code)).toEqual(["57014"]);
        expect(F.readyStatus(r.at(-1)!)).toBe("E");
        expect(F.readyStatus((await conn.roundTrip(F.query("rollback"))).at(-1)!)).toBe("I");
        await sessionClean(conn);
        await serverReleased(conn);
      });
    }
  });
}

suite("transaction");
suite("statement");

// ---- failing against the current proxy -------------------------------------------------------

suite("session");

describe("session-mode server reuse", () => {
  test("a client that leaves gives its server back at once, reset, to the next client", async () => {
    const proxy = await startProxy({ mode: "session", maxConnections: 1, poolExtra: "wait_timeout_secs = 1" });
    try {
      const a = await W.login(proxy.port, USER);
      const first = F.firstColumn(await a.conn.roundTrip(F.query("set statement_timeout = '3s'; select pg_backend_pid()")))[0];
      a.conn.quit();
      await Bun.sleep(100);
      const b = await W.login(proxy.port, USER);
      const t0 = performance.now();
      const r = await b.conn.roundTrip(F.query("select pg_backend_pid(), current_setting('statement_timeout')"), 1, 3000);
      expect(F.errors(r)).toEqual([]);
      expect(performance.now() - t0).toBeLessThan(500);
      expect(F.dataRow(r.find((m) => m.type === "D")!)).toEqual([first!, "0"]);
      b.conn.quit();
    } finally {
      W.RawConn.destroyAll();
      await proxy.stop();
    }
  });
});
