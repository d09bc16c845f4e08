// Failed logins reveal nothing (RELIABILITY D3, D9, D13): unknown users look like wrong passwords, a missing database is named only after authentication (as PostgreSQL), nothing before login, fail closed.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { BUN, startProxy, writeConfig, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { parseServerFirst, RawConn, ScramClient, tryLogin } from "../support/wire.ts";

const ROOT = join(import.meta.dir, "..", "..");
const E31 = "é".repeat(31); // 62 bytes: a real database

let inst: PgInstance;
let proxy: RunningProxy;
let passthrough: RunningProxy;

beforeAll(async () => {
  inst = await startPgInstance({
    databases: ["d3", E31],
    hba: ["host all unlisted,trusty 127.0.0.1/32 trust", "host all all 127.0.0.1/32 scram-sha-256"],
  });
  await inst.psql("CREATE ROLE known LOGIN PASSWORD 'known-pw'; CREATE ROLE unlisted LOGIN; CREATE ROLE trusty LOGIN");
  const nodes = [{ host: "127.0.0.1", port: inst.port }];
  proxy = await startProxy({
    nodes,
    toml: [
      `[[users]]\nname = "known"\npassword = "known-pw"`,
      `[[users]]\nname = "trusty"\nauth_method = "trust"`,
      `[[users]]\nname = "${"k".repeat(64)}"\npassword = "long-pw"`,
    ].join("\n"),
  });
  passthrough = await startProxy({ nodes });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await passthrough?.stop();
  await inst?.destroy();
}, 60000);

/** Everything a failed login shows: message types in order and the error's fields (user name masked). */
function shape(messages: F.BackendMessage[], user: string): { types: string; error: F.ErrorFields | null } {
  const types = messages.map((m) => (m.type === "R" ? `R${F.authCode(m)}` : m.type)).join(",");
  const e = messages.find((m) => m.type === "E");
  if (!e) return { types, error: null };
  const err = F.errorFields(e.body);
  const mask = (s: string | undefined) => s?.replaceAll(`"${user}"`, '"<user>"');
  return { types, error: { ...err, message: mask(err.message)!, fields: Object.fromEntries(Object.entries(err.fields).map(([k, v]) => [k, mask(v)!])) } };
}

async function attempt(port: number, user: string, db: string, password: string) {
  const { conn: c, login } = await tryLogin(port, { user, database: db }, password);
  c.destroy();
  return { login, shape: shape(login.messages, user) };
}

/** The SCRAM server-first message offered to `user` (the exchange is then abandoned). */
async function serverFirst(port: number, user: string): Promise<{ r: string; s: string; i: number }> {
  const c = await RawConn.start(port, { user, database: "d3" });
  const req = await c.next();
  expect(req?.type).toBe("R");
  expect(F.authCode(req!)).toBe(10);
  const sc = new ScramClient("irrelevant");
  await c.send(F.saslInitialResponse("SCRAM-SHA-256", sc.clientFirst()));
  const cont = await c.next();
  expect(cont?.type).toBe("R");
  expect(F.authCode(cont!)).toBe(11);
  c.destroy();
  const sf = parseServerFirst(F.saslData(cont!));
  expect(sf.r.startsWith(sc.nonce)).toBe(true);
  return sf;
}

describe("D3 unknown user looks like a wrong password; an unknown database is 3D000 after authentication", () => {
  test("[[users]]: wrong password and unknown user give the same exchange and error; the right password to a missing database gets 3D000", async () => {
    const wrong = await attempt(proxy.port, "known", "d3", "bad");
    const ghost = await attempt(proxy.port, "ghost", "d3", "bad");
    const noDb = await attempt(proxy.port, "known", "no_such_db", "known-pw");
    const noDbBadPw = await attempt(proxy.port, "known", "no_such_db", "bad");
    expect(wrong.shape.types).toBe("R10,R11,E");
    expect(ghost.shape).toEqual(wrong.shape);
    expect(noDbBadPw.shape).toEqual(wrong.shape);
    expect([noDb.shape.error!.severity, noDb.shape.error!.code, noDb.shape.error!.message]).toEqual(["FATAL", "3D000", 'database "no_such_db" does not exist']);
    expect(wrong.shape.error!.code).toBe("28P01");
    expect(wrong.shape.error!.severity).toBe("FATAL");
    expect(wrong.shape.error!.message).toBe('password authentication failed for user "<user>"');
  });

  test("passthrough: unknown user reads like a wrong password; the right password to a missing database gets 3D000", async () => {
    await inst.psql("CREATE ROLE pknown LOGIN PASSWORD 'pknown-pw'");
    const wrong = await attempt(passthrough.port, "pknown", "d3", "bad");
    const ghost = await attempt(passthrough.port, "pghost", "d3", "bad");
    const noDb = await attempt(passthrough.port, "pknown", "no_such_db", "pknown-pw");
    expect(wrong.shape.types).toBe("R3,E");
    expect(ghost.shape).toEqual(wrong.shape);
    expect(noDb.shape.types).toBe("R3,E");
    expect(noDb.shape.error!.code).toBe("3D000");
    expect(wrong.shape.error!.code).toBe("28P01");
  });

  test("the SCRAM salt offered to an unknown user is stable, per user, with the real iteration count", async () => {
    const real1 = await serverFirst(proxy.port, "known");
    const real2 = await serverFirst(proxy.port, "known");
    const ghost1 = await serverFirst(proxy.port, "ghost");
    const ghost2 = await serverFirst(proxy.port, "ghost");
    const other = await serverFirst(proxy.port, "ghost2");
    expect(real2.s).toBe(real1.s);
    expect(ghost2.s).toBe(ghost1.s);
    expect(other.s).not.toBe(ghost1.s);
    expect(ghost1.s).not.toBe(real1.s);
    expect(Buffer.from(ghost1.s, "base64").length).toBe(Buffer.from(real1.s, "base64").length);
    expect(ghost1.i).toBe(real1.i);
    expect(new Set([real1.r, real2.r, ghost1.r, ghost2.r]).size).toBe(4);
  });
});

describe("D9 nothing about servers reaches a client before login", () => {
  test("a trusted user asking for a missing database gets one ErrorResponse and nothing else", async () => {
    const { login } = await attempt(proxy.port, "trusty", "no_such_db", "");
    expect(login.messages.map((m) => m.type)).toEqual(["E"]);
    const e = F.errorFields(login.messages[0]!.body);
    expect([e.severity, e.code, e.message]).toEqual(["FATAL", "3D000", 'database "no_such_db" does not exist']);
    expect(JSON.stringify(e.fields)).not.toContain(String(inst.port));
  });

  test("passthrough to a trusting server: a missing database gets one ErrorResponse (3D000) and nothing else", async () => {
    const { login } = await attempt(passthrough.port, "unlisted", "no_such_db", "");
    expect(login.messages.map((m) => m.type)).toEqual(["E"]);
    expect(F.errorFields(login.messages[0]!.body).code).toBe("3D000");
  });

  test("passthrough with a password: only authentication requests come before the error", async () => {
    const { login } = await attempt(passthrough.port, "pknown", "no_such_db_2", "pknown-pw");
    expect(login.messages.map((m) => m.type)).toEqual(["R", "E"]);
    expect(F.authCode(login.messages[0]!)).toBe(3);
  });
});

describe("D13 fail closed", () => {
  async function checkConfig(toml: string): Promise<{ code: number; out: string }> {
    const path = writeConfig(`[proxy]\nlisten_address = "127.0.0.1:1"\n[[nodes]]\nhost = "127.0.0.1"\n${toml}`);
    const p = Bun.spawn([BUN, `--config=${join(ROOT, "bunfig.toml")}`, join(ROOT, "src/cli/main.ts"), "check-config", "--config", path], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [o, e, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out: o + e };
  }

  test("an invalid auth_method, or one that cannot use the stored password, is refused at load", async () => {
    const bad = await checkConfig(`[[users]]\nname = "x"\npassword = "p"\nauth_method = "plaintext"`);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("auth_method");
    const badDefault = await checkConfig(`[auth]\nmethod = "none"`);
    expect(badDefault.code).not.toBe(0);
    expect(badDefault.out).toContain("method");
    const md5WithVerifier = await checkConfig(`[[users]]\nname = "x"\npassword = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"\nauth_method = "md5"`);
    expect(md5WithVerifier.code).not.toBe(0);
    const good = await checkConfig(`[[users]]\nname = "x"\npassword = "p"\nauth_method = "md5"`);
    expect(good.code).toBe(0);
  });

  test("a user missing from [[users]] cannot log in even though the server would trust it", async () => {
    for (const password of ["", "anything"]) {
      const r = await attempt(proxy.port, "unlisted", "d3", password);
      expect(r.login.ok).toBe(false);
      expect(r.login.error?.code).toBe("28P01");
    }
    // The same role goes straight in through a passthrough proxy: the refusal above was the proxy's.
    const direct = await attempt(passthrough.port, "unlisted", "d3", "");
    expect(direct.login.ok).toBe(true);
  });

  test("database and user names over 63 bytes are refused before any server login", async () => {
    const servers = async () => Number(await inst.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'known'"));
    const before = await servers();
    const longDb = await attempt(proxy.port, "known", "d".repeat(64), "known-pw");
    expect(longDb.login.error?.code).toBe("28P01");
    const longUser = await attempt(proxy.port, "k".repeat(64), "d3", "long-pw");
    expect(longUser.login.error?.code).toBe("28P01");
    const huge = await attempt(proxy.port, "known", "d".repeat(9000), "known-pw");
    expect(huge.login.ok).toBe(false);
    // A 62-byte name in 31 characters is fine.
    const ok = await attempt(proxy.port, "known", E31, "known-pw");
    expect(ok.login.ok).toBe(true);
    expect(await servers()).toBeLessThanOrEqual(before + 1);
  });
});
