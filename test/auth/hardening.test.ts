// Auth hardening (RELIABILITY D4, D8, D15): cancel keys of the wrong length, no secrets in debug logs, oversized or stalled auth messages.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { configText, freePort, startProxyWithConfig, writeConfig, type ProxyOptions, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { exchange, md5Response, RawConn, tryLogin } from "../support/wire.ts";

let inst: PgInstance;
let proxy: RunningProxy;
let passthrough: RunningProxy;
const passwords = { s8: "pw-s8-Secret!", m8: "pw-m8-Secret!", p8: "pw-p8-Secret!", v8: "pw-v8-Secret!" };
let verifier = "";

/** Start the proxy with extra [proxy] keys (log level, login timeout). */
async function startWithProxyKeys(o: ProxyOptions, keys: Record<string, string>): Promise<RunningProxy> {
  const port = freePort();
  const admin = freePort();
  let text = configText(port, admin, o);
  for (const [k, v] of Object.entries(keys)) {
    const line = `${k} = ${v}`;
    text = new RegExp(`^${k} = .*$`, "m").test(text) ? text.replace(new RegExp(`^${k} = .*$`, "m"), line) : text.replace("[proxy]\n", `[proxy]\n${line}\n`);
  }
  return startProxyWithConfig(writeConfig(text), port, admin);
}

beforeAll(async () => {
  inst = await startPgInstance({
    databases: ["d8"],
    hba: ["host all postgres 127.0.0.1/32 trust", "host all m8 127.0.0.1/32 md5", "host all all 127.0.0.1/32 scram-sha-256"],
  });
  await inst.psql(
    `CREATE ROLE s8 LOGIN PASSWORD '${passwords.s8}'; CREATE ROLE p8 LOGIN PASSWORD '${passwords.p8}'; CREATE ROLE v8 LOGIN PASSWORD '${passwords.v8}';` +
      `SET password_encryption = 'md5'; CREATE ROLE m8 LOGIN PASSWORD '${passwords.m8}'`,
  );
  verifier = await inst.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'v8'");
  const nodes = [{ host: "127.0.0.1", port: inst.port }];
  const users = [
    `[[users]]\nname = "postgres"\nauth_method = "trust"`,
    `[[users]]\nname = "s8"\npassword = "${passwords.s8}"`,
    `[[users]]\nname = "m8"\npassword = "${passwords.m8}"\nauth_method = "md5"`,
    `[[users]]\nname = "v8"\npassword = "${verifier}"\nserver_password = "${passwords.v8}"`,
  ].join("\n");
  proxy = await startWithProxyKeys({ nodes, toml: users }, { log_level: '"debug"', login_timeout_secs: "2" });
  passthrough = await startWithProxyKeys({ nodes }, { log_level: '"debug"' });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await passthrough?.stop();
  await inst?.destroy();
}, 60000);

/** Send a raw cancel packet on its own connection and wait (at most 2 s) for the proxy to close it. */
async function sendCancel(port: number, pid: number, secret: Uint8Array): Promise<void> {
  await exchange(port, F.cancelRequest(pid, secret), { timeoutMs: 2000 });
}

describe("D4 cancel keys", () => {
  for (const minor of [0, 2]) {
    test(`protocol 3.${minor}: keys of the wrong length or value cancel nothing; the right key cancels`, async () => {
      const started = await RawConn.start(passthrough.port, { user: "postgres", database: "d8" }, { minor });
      const l = await started.login("postgres", null);
      expect(l.ok).toBe(true);
      const { pid, secret } = l.key!;
      expect(secret.length).toBe(minor === 2 ? 32 : 4);
      const flipped = Buffer.from(secret);
      flipped[0] ^= 1;
      const bad = [
        Buffer.concat([secret, Buffer.from([0])]),
        Buffer.concat([secret, Buffer.alloc(4)]),
        secret.subarray(0, secret.length - 1),
        secret.subarray(0, 4 === secret.length ? 3 : 4),
        Buffer.alloc(0),
        flipped,
        Buffer.concat([secret, Buffer.alloc(256 - secret.length)]),
      ];
      const t0 = performance.now();
      await started.send(F.query("SELECT pg_sleep(1.2)"));
      await Bun.sleep(150);
      for (const s of bad) await sendCancel(passthrough.port, pid, s);
      await sendCancel(passthrough.port, pid + 1, secret);
      const msgs = await started.until("Z", 5000);
      expect(msgs.filter((m) => m.type === "E").map((m) => F.errorFields(m.body).code)).toEqual([]);
      expect(performance.now() - t0).toBeGreaterThan(1100);

      // The right key does cancel.
      const t1 = performance.now();
      await started.send(F.query("SELECT pg_sleep(5)"));
      await Bun.sleep(150);
      await sendCancel(passthrough.port, pid, secret);
      const res = await started.until("Z", 5000);
      expect(res.filter((m) => m.type === "E").map((m) => F.errorFields(m.body).code)).toEqual(["57014"]);
      expect(performance.now() - t1).toBeLessThan(2500);
      started.destroy();
    }, 20000);
  }
});

describe("D8 no secret in logs", () => {
  test("a login storm and ALTER ROLE ... PASSWORD at log_level debug leave no password, proof or hash in the output", async () => {
    const secrets = new Set<string>([...Object.values(passwords), "secret123", "wrong-Secret-1"]);
    // The verifier's keys are secrets too.
    for (const part of verifier.split(/[$:]/).slice(2)) secrets.add(part);
    const logins: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      for (const [user, pw] of Object.entries(passwords)) {
        const port = user === "p8" ? passthrough.port : proxy.port;
        for (const attempt of [pw, "wrong-Secret-1"]) {
          logins.push(
            tryLogin(port, { user, database: "d8" }, attempt).then(({ conn: c, login }) => {
              if (login.scramProof) secrets.add(login.scramProof);
              const md5Req = login.messages.find((m) => m.type === "R" && F.authCode(m) === 5);
              if (md5Req) secrets.add(md5Response(attempt, user, md5Req.body.subarray(4, 8)).slice(3));
              c.destroy();
            }),
          );
        }
      }
    }
    await Promise.all(logins);
    const admin = await tryLogin(proxy.port, { user: "postgres", database: "d8" }, null);
    expect(admin.login.ok).toBe(true);
    const alter = await admin.conn.simpleQuery("ALTER ROLE s8 PASSWORD 'secret123'");
    expect(alter.error).toBeNull();
    const bad = await admin.conn.simpleQuery("ALTER ROLE nobody_here PASSWORD 'secret123'");
    expect(bad.error?.code).toBe("42704");
    admin.conn.end();
    await inst.psql(`ALTER ROLE s8 PASSWORD '${passwords.s8}'`);
    await Bun.sleep(200);

    const out = proxy.output() + passthrough.output();
    expect(out).toContain("listening on");
    expect(secrets.size).toBeGreaterThan(10);
    for (const s of secrets) expect(out.includes(s) ? `leaked: ${s}` : "clean").toBe("clean");
  }, 30000);
});

describe("D15 oversized and stalled auth messages", () => {
  async function afterRequest(user: string, code: number): Promise<RawConn> {
    const c = await RawConn.start(proxy.port, { user, database: "d8" });
    const r = await c.next();
    expect(r?.type).toBe("R");
    expect(F.authCode(r!)).toBe(code);
    return c;
  }

  async function expectProtocolViolation(c: RawConn, send: Buffer): Promise<void> {
    const t0 = performance.now();
    await c.send(send);
    const msgs = await c.drain(3000);
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    const e = F.errorFields(msgs[0]!.body);
    expect(e.code).toBe("08P01");
    expect(e.severity).toBe("FATAL");
    expect(c.closed).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000);
  }

  /** A 'p' message header declaring `size` bytes, followed by `sent` of them. */
  function bigMessage(size: number, sent: number): Buffer {
    const b = Buffer.alloc(5 + sent, 0x41);
    b[0] = "p".charCodeAt(0);
    b.writeInt32BE(size + 4, 1);
    return b;
  }

  test("a 1 MB SASLInitialResponse is refused with 08P01 and the connection closed", async () => {
    await expectProtocolViolation(await afterRequest("s8", 10), bigMessage(1 << 20, 4096));
  });

  test("a 1 MB PasswordMessage (md5) is refused with 08P01 and the connection closed", async () => {
    await expectProtocolViolation(await afterRequest("m8", 5), bigMessage(1 << 20, 4096));
  });

  test("a 1 MB cleartext password (passthrough) is refused without reaching the server", async () => {
    const c = await RawConn.start(passthrough.port, { user: "p8", database: "d8_other" });
    const r = await c.next();
    expect(F.authCode(r!)).toBe(3);
    await c.send(bigMessage(1 << 20, 4096));
    const msgs = await c.drain(3000);
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    expect(F.errorFields(msgs[0]!.body).code).toBe("08P01");
  });

  test("a whole 1 MB SASLInitialResponse sent at once: refused, closed, the proxy unharmed", async () => {
    const c = await afterRequest("s8", 10);
    const big = F.saslInitialResponse("SCRAM-SHA-256", Buffer.alloc(1 << 20, 0x61));
    await c.send(big);
    const msgs = await c.drain(3000).catch(() => []);
    expect(msgs.some((m) => m.type === "R" || m.type === "Z")).toBe(false);
    for (const m of msgs) expect(F.errorFields(m.body).code).toBe("08P01");
    expect(await c.waitClosed(10000)).toBe(true);
    const ok = await tryLogin(proxy.port, { user: "s8", database: "d8" }, passwords.s8);
    expect(ok.login.ok).toBe(true);
    ok.conn.destroy();
  });

  test("a SCRAM client-first message far over its size limit fails the login cleanly", async () => {
    const c = await afterRequest("s8", 10);
    await c.send(F.saslInitialResponse("SCRAM-SHA-256", `n,,n=,r=${"x".repeat(60000)}`));
    const msgs = await c.drain(3000);
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    expect(["28P01", "08P01"]).toContain(F.errorFields(msgs[0]!.body).code);
  });

  test("a client that stalls in the SCRAM exchange is closed at login_timeout_secs", async () => {
    const t0 = performance.now();
    const c = await afterRequest("s8", 10);
    const msgs = await c.drain(5000);
    const took = performance.now() - t0;
    expect(c.closed).toBe(true);
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    expect(took).toBeGreaterThan(1500);
    expect(took).toBeLessThan(3500);
  });
});
