// Names and errors before login (RELIABILITY D9, D13): byte-bounded database names; no server address leaks to an unauthenticated client.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { tryLogin } from "../support/wire.ts";

/** 63 bytes in 32 characters: the longest database name PostgreSQL keeps. */
const REAL = "a" + "é".repeat(31);
/** 64 bytes in 33 characters: PostgreSQL would cut it to REAL. */
const LONG = REAL + "b";

let inst: PgInstance;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  inst = await startPgInstance({ databases: [REAL] });
}, 60000);

afterAll(async () => {
  for (const p of proxies) await p.stop();
  await inst?.destroy();
}, 60000);

describe("D13 database names from the network are bounded in bytes", () => {
  test("a 64-byte database name is refused even when it is only 33 characters", async () => {
    const p = await startProxy({ nodes: [{ host: "127.0.0.1", port: inst.port }], toml: "[limits]\nmax_db_connections = 1" });
    proxies.push(p);
    expect(Buffer.byteLength(REAL)).toBe(63);
    expect(Buffer.byteLength(LONG)).toBe(64);
    const ok = await tryLogin(p.port, { user: "postgres", database: REAL }, null);
    expect(ok.login.ok).toBe(true);
    // Were LONG accepted it would reach the same database under another pool, past max_db_connections.
    const long = await tryLogin(p.port, { user: "postgres", database: LONG }, null);
    long.conn.destroy();
    ok.conn.destroy();
    expect(long.login.ok).toBe(false);
    expect(long.login.error?.code).toBe("28P01");
  });
});

describe("D9 an unreachable server is not described to a client that has not logged in", () => {
  test("passthrough login with the backend down: the error names no server address", async () => {
    const deadPort = freePort();
    const p = await startProxy({ nodes: [{ host: "127.0.0.1", port: deadPort }], poolExtra: "wait_timeout_secs = 1\nconnect_timeout_secs = 1" });
    proxies.push(p);
    const { conn: c, login } = await tryLogin(p.port, { user: "postgres", database: "postgres" }, "pw");
    c.destroy();
    expect(login.ok).toBe(false);
    expect(login.messages.map((m) => m.type)).toEqual(["E"]);
    const e = F.errorFields(login.messages[0]!.body);
    expect(e.code).toMatch(/^08/);
    const text = JSON.stringify(e.fields);
    expect(text).not.toContain(String(deadPort));
    expect(text).not.toContain("127.0.0.1");
  });
});
