// Client/server authentication matrix (RELIABILITY D1, D2): trust, md5 and SCRAM on each side, passthrough, wrong and empty passwords.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import pg from "pg";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { md5Stored, RawConn, ScramClient, tryLogin } from "../support/wire.ts";

type Method = "trust" | "md5" | "scram";
const METHODS: Method[] = ["trust", "md5", "scram"];
const AUTH_METHOD = { trust: "trust", md5: "md5", scram: "scram-sha-256" } as const;
/** Authentication request the proxy sends first for each client-side method. */
const FIRST_REQUEST = { trust: 0, md5: 5, scram: 10 } as const;

const roleName = (client: Method, server: Method) => `c_${client}_s_${server}`;
const pw = (role: string) => `pw-${role}`;

let inst: PgInstance;
let proxy: RunningProxy;
let passthrough: RunningProxy;

beforeAll(async () => {
  const byServer = (m: Method) => METHODS.map((c) => roleName(c, m)).concat(m === "scram" ? ["inherit_scram", "p_scram", "p_scram2"] : [`p_${m}`]);
  inst = await startPgInstance({
    databases: ["d1"],
    conf: { log_connections: "on" },
    hba: [`host all ${byServer("trust").join(",")} 127.0.0.1/32 trust`, `host all ${byServer("md5").join(",")} 127.0.0.1/32 md5`, "host all all 127.0.0.1/32 scram-sha-256"],
  });
  const sql: string[] = [];
  for (const s of METHODS) {
    sql.push(`SET password_encryption = '${s === "md5" ? "md5" : "scram-sha-256"}'`);
    for (const role of byServer(s)) sql.push(`CREATE ROLE ${role} LOGIN PASSWORD '${pw(role)}'`);
  }
  sql.push("CREATE ROLE nopw_scram LOGIN PASSWORD 'whatever'", "CREATE ROLE nopw_md5 LOGIN PASSWORD 'whatever'");
  await inst.psql(sql.join(";\n"));
  const stored = async (role: string) => inst.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`);

  // One [[users]] entry per (client method, server method); stored forms vary: plain, md5 hash, SCRAM verifier.
  const users: string[] = [];
  for (const c of METHODS) {
    for (const s of METHODS) {
      const role = roleName(c, s);
      let password = pw(role);
      let serverPassword = "";
      if (c === "trust") {
        password = "";
        serverPassword = s === "trust" ? "" : pw(role);
      } else if (c === "md5" && s === "md5") {
        password = await stored(role);
        expect(password).toBe(md5Stored(pw(role), role));
        serverPassword = pw(role);
      } else if (c === "scram" && s === "scram") {
        password = await stored(role);
        expect(password).toStartWith("SCRAM-SHA-256$4096:");
        serverPassword = pw(role);
      }
      users.push(`[[users]]\nname = "${role}"\npassword = "${password}"\nserver_password = "${serverPassword}"\nauth_method = "${AUTH_METHOD[c]}"`);
    }
  }
  users.push(`[[users]]\nname = "inherit_scram"\npassword = "${pw("inherit_scram")}"`);
  users.push(`[[users]]\nname = "nopw_scram"\npassword = ""\nauth_method = "scram-sha-256"`);
  users.push(`[[users]]\nname = "nopw_md5"\npassword = ""\nauth_method = "md5"`);
  const nodes = [{ host: "127.0.0.1", port: inst.port }];
  proxy = await startProxy({ nodes, toml: users.join("\n") });
  passthrough = await startProxy({ nodes });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await passthrough?.stop();
  await inst?.destroy();
}, 60000);

async function pgLogin(port: number, user: string, password: string | undefined): Promise<string> {
  const c = new pg.Client({ host: "127.0.0.1", port, database: "d1", user, password });
  c.on("error", () => {});
  try {
    await c.connect();
    const r = await c.query("SELECT current_user AS u");
    return r.rows[0].u;
  } catch (e) {
    return `error ${(e as { code?: string }).code ?? (e as Error).message}`;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Server-side auth method PostgreSQL logged for a role ("trust" when no password method was logged). */
function serverMethodLogged(role: string): string {
  const log = readFileSync(inst.logFile, "utf8");
  const m = new RegExp(`connection authenticated: identity="${role}" method=([a-z0-9-]+)`).exec(log);
  return m ? m[1]! : "trust";
}

describe("D1 client/server auth matrix", () => {
  for (const c of METHODS) {
    for (const s of METHODS) {
      const role = roleName(c, s);
      test(`client ${c} -> proxy -> server ${s}`, async () => {
        // The proxy asks the client for the configured method...
        const { conn, login } = await tryLogin(proxy.port, { user: role, database: "d1" }, pw(role));
        const firstR = login.messages.find((m) => m.type === "R")!;
        expect(F.authCode(firstR)).toBe(FIRST_REQUEST[c]);
        expect(login.error).toBeNull();
        expect(login.ok).toBe(true);
        expect((await conn.simpleQuery("SELECT current_user")).rows).toEqual([[role]]);
        conn.end();
        // ...a real client library logs in too, and PostgreSQL saw the server-side method.
        expect(await pgLogin(proxy.port, role, pw(role))).toBe(role);
        expect(serverMethodLogged(role)).toBe({ trust: "trust", md5: "md5", scram: "scram-sha-256" }[s]);
        if (c !== "trust") {
          const bad = await tryLogin(proxy.port, { user: role, database: "d1" }, "not-the-password");
          expect(bad.login.ok).toBe(false);
          expect(bad.login.error?.code).toBe("28P01");
        }
      });
    }
  }

  test("a user without auth_method inherits [auth] method (scram-sha-256)", async () => {
    const { conn: c, login } = await tryLogin(proxy.port, { user: "inherit_scram", database: "d1" }, pw("inherit_scram"));
    expect(F.authCode(login.messages[0]!)).toBe(10);
    expect(login.ok).toBe(true);
    c.end();
  });

  test("passthrough: the first login hands the password over in cleartext, later logins use SCRAM", async () => {
    for (const s of METHODS) {
      const role = `p_${s}`;
      const first = await tryLogin(passthrough.port, { user: role, database: "d1" }, pw(role));
      expect(first.login.ok).toBe(true);
      const expectFirst = s === "trust" ? 0 : 3;
      expect(F.authCode(first.login.messages[0]!)).toBe(expectFirst);
      first.conn.end();
      const second = await tryLogin(passthrough.port, { user: role, database: "d1" }, pw(role));
      expect(second.login.ok).toBe(true);
      expect(F.authCode(second.login.messages[0]!)).toBe(s === "trust" ? 0 : 10);
      expect((await second.conn.simpleQuery("SELECT current_user")).rows).toEqual([[role]]);
      second.conn.end();
      expect(await pgLogin(passthrough.port, role, pw(role))).toBe(role);
      if (s !== "trust") {
        const bad = await tryLogin(passthrough.port, { user: role, database: "d1" }, "wrong");
        expect(bad.login.error?.code).toBe("28P01");
      }
    }
  });

  test("passthrough: a wrong first password fails and teaches the proxy nothing", async () => {
    const bad = await tryLogin(passthrough.port, { user: "p_scram2", database: "d1" }, "wrong");
    expect(bad.login.error?.code).toBe("28P01");
    expect(F.authCode(bad.login.messages[0]!)).toBe(3);
    const good = await tryLogin(passthrough.port, { user: "p_scram2", database: "d1" }, pw("p_scram2"));
    expect(good.login.ok).toBe(true);
    good.conn.end();
    const badAgain = await tryLogin(passthrough.port, { user: "p_scram2", database: "d1" }, "wrong");
    expect(badAgain.login.error?.code).toBe("28P01");
  });
});

describe("D2 wrong or empty passwords", () => {
  /** Log in answering every password request with the empty string, by hand (client libraries refuse to). */
  async function emptyPasswordLogin(port: number, user: string): Promise<string> {
    const c = await RawConn.start(port, { user, database: "d1" });
    let scram: ScramClient | null = null;
    for (;;) {
      const m = await c.next(10000);
      if (m === null) return "closed";
      if (m.type === "E") {
        c.destroy();
        return F.errorFields(m.body).code === "28P01" ? "28P01" : "other error";
      }
      if (m.type === "Z") {
        c.destroy();
        return "logged in";
      }
      if (m.type !== "R") continue;
      const code = F.authCode(m);
      if (code === 3 || code === 5) await c.send(F.password(""));
      else if (code === 10) {
        scram = new ScramClient("");
        await c.send(F.saslInitialResponse("SCRAM-SHA-256", scram.clientFirst()));
      } else if (code === 11) await c.send(F.saslResponse(scram!.clientFinal(F.saslData(m))));
    }
  }

  test("an empty password never logs in, whatever the method or stored form", async () => {
    for (const role of ["c_md5_s_md5", "c_md5_s_scram", "c_scram_s_scram", "c_scram_s_md5", "inherit_scram", "nopw_scram", "nopw_md5"]) {
      expect(`${role}: ${await emptyPasswordLogin(proxy.port, role)}`).toBe(`${role}: 28P01`);
    }
    for (const role of ["p_scram", "p_md5", "p_scram2"]) {
      expect(`${role}: ${await emptyPasswordLogin(passthrough.port, role)}`).toBe(`${role}: 28P01`);
    }
  });

  test("a configured user with no password cannot log in with any password", async () => {
    for (const role of ["nopw_scram", "nopw_md5"]) {
      for (const attempt of ["whatever", "x"]) {
        const r = await tryLogin(proxy.port, { user: role, database: "d1" }, attempt);
        expect(r.login.ok).toBe(false);
        expect(r.login.error?.code).toBe("28P01");
      }
    }
  });

  test("wrong passwords give 28P01 through a client library", async () => {
    for (const role of ["c_md5_s_trust", "c_scram_s_trust", "c_scram_s_scram"]) {
      expect(await pgLogin(proxy.port, role, "nope")).toBe("error 28P01");
    }
    expect(await pgLogin(passthrough.port, "p_md5", "nope")).toBe("error 28P01");
  });
});
