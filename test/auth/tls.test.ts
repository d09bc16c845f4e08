// TLS on both sides (RELIABILITY D6): client TLS required means plaintext refused; server verify-full trusts only the configured CA.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance, type TlsFiles } from "../support/pg-instance.ts";
import * as F from "../support/frames.ts";
import { RawConn, tryLogin } from "../support/wire.ts";

let inst: PgInstance;
let certs: TlsFiles;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  // The server accepts TLS connections only.
  inst = await startPgInstance({ ssl: true, databases: ["d6"], hba: ["hostssl all all 127.0.0.1/32 trust", "hostnossl all all 127.0.0.1/32 reject"] });
  certs = inst.certs!;
}, 60000);

afterAll(async () => {
  for (const p of proxies) await p.stop();
  await inst?.destroy();
}, 60000);

async function proxyWithTls(tls: Record<string, string>): Promise<RunningProxy> {
  const lines = Object.entries(tls).map(([k, v]) => `${k} = "${v}"`);
  const p = await startProxy({ nodes: [{ host: "127.0.0.1", port: inst.port }], toml: `[tls]\n${lines.join("\n")}` });
  proxies.push(p);
  return p;
}

const serverSide = () => ({ server_sslmode: "verify-full", server_ca_file: certs.caCert });

describe("D6 client-facing TLS", () => {
  test("mode = require: a plaintext client is refused with 28000; psql with sslmode=require gets an SSL session", async () => {
    const p = await proxyWithTls({ mode: "require", cert_file: certs.serverCert, key_file: certs.serverKey, ...serverSide() });
    const plain = await tryLogin(p.port, { user: "postgres", database: "d6" }, null);
    expect(plain.login.ok).toBe(false);
    expect(plain.login.messages.map((m) => m.type)).toEqual(["E"]);
    expect(plain.login.error?.code).toBe("28000");
    expect(plain.conn.closed || (await plain.conn.drain(2000)).length === 0).toBe(true);

    const lib = new pg.Client({ host: "127.0.0.1", port: p.port, database: "d6", user: "postgres", ssl: false });
    lib.on("error", () => {});
    const libErr = await lib.connect().then(
      () => null,
      (e) => e as { code?: string },
    );
    expect(libErr?.code).toBe("28000");

    const r = await psql(p.port, ["-c", "\\conninfo", "-c", "SELECT 'over tls' AS v"], { db: "d6", env: { PGSSLMODE: "require" } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("SSL connection");
    expect(r.stdout).toContain("over tls");

    // The certificate presented is the configured one: it verifies against its CA for 127.0.0.1, not against another CA.
    const full = await psql(p.port, ["-Atc", "SELECT 1"], { db: "d6", env: { PGSSLMODE: "verify-full", PGSSLROOTCERT: certs.caCert } });
    expect(full.stdout.trim()).toBe("1");
    const wrong = await psql(p.port, ["-Atc", "SELECT 1"], { db: "d6", env: { PGSSLMODE: "verify-full", PGSSLROOTCERT: certs.otherCaCert } });
    expect(wrong.code).not.toBe(0);
  }, 20000);

  test("mode = allow: plaintext and TLS clients both get in", async () => {
    const p = await proxyWithTls({ mode: "allow", cert_file: certs.serverCert, key_file: certs.serverKey, ...serverSide() });
    const plain = await psql(p.port, ["-c", "\\conninfo"], { db: "d6", env: { PGSSLMODE: "disable" } });
    expect(plain.code).toBe(0);
    expect(plain.stdout).not.toContain("SSL connection");
    const tls = await psql(p.port, ["-c", "\\conninfo"], { db: "d6", env: { PGSSLMODE: "require" } });
    expect(tls.code).toBe(0);
    expect(tls.stdout).toContain("SSL connection");
  }, 20000);

  test("bytes sent after SSLRequest before the handshake are refused (08P01)", async () => {
    const p = await proxyWithTls({ mode: "allow", cert_file: certs.serverCert, key_file: certs.serverKey, ...serverSide() });
    const c = await RawConn.open(p.port);
    await c.sendSslRequest(F.startup({ user: "postgres", database: "d6" }));
    // Refused before any handshake: no 'S', an ErrorResponse in plaintext.
    expect(await c.sslAnswer()).toBe("E");
    const msgs = await c.drain(3000);
    expect(msgs.map((m) => m.type)).toEqual(["E"]);
    expect(F.errorFields(msgs[0]!.body).code).toBe("08P01");
  });

  test("mode = disable: SSLRequest is answered 'N' and the login goes on in plaintext", async () => {
    const p = await proxyWithTls({ mode: "disable", ...serverSide() });
    const c = await RawConn.open(p.port);
    await c.sendSslRequest();
    expect(await c.sslAnswer()).toBe("N");
    await c.send(F.startup({ user: "postgres", database: "d6" }));
    const msgs = await c.until("ZE", 5000);
    expect(msgs.at(-1)?.type).toBe("Z");
    c.end();
  });
});

describe("D6 server-facing TLS", () => {
  async function loginThrough(p: RunningProxy): Promise<{ ok: boolean; code?: string; ssl?: string }> {
    const { conn: c, login } = await tryLogin(p.port, { user: "postgres", database: "d6" }, null);
    if (!login.ok) {
      c.destroy();
      return { ok: false, code: login.error?.code };
    }
    const q = await c.simpleQuery("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    c.end();
    return { ok: true, ssl: q.rows[0]?.[0] ?? undefined };
  }

  test("verify-full with the right CA logs in over TLS", async () => {
    const p = await proxyWithTls({ server_sslmode: "verify-full", server_ca_file: certs.caCert });
    expect(await loginThrough(p)).toEqual({ ok: true, ssl: "true" });
  });

  test("verify-full with the wrong CA fails the login with an 08 error", async () => {
    const p = await proxyWithTls({ server_sslmode: "verify-full", server_ca_file: certs.otherCaCert });
    const r = await loginThrough(p);
    expect(r.ok).toBe(false);
    expect(r.code).toMatch(/^08/);
  });

  test("verify-ca with the right CA logs in; require does not check the CA", async () => {
    const ca = await proxyWithTls({ server_sslmode: "verify-ca", server_ca_file: certs.caCert });
    expect(await loginThrough(ca)).toEqual({ ok: true, ssl: "true" });
    const req = await proxyWithTls({ server_sslmode: "require", server_ca_file: certs.otherCaCert });
    expect(await loginThrough(req)).toEqual({ ok: true, ssl: "true" });
    const wrongCa = await proxyWithTls({ server_sslmode: "verify-ca", server_ca_file: certs.otherCaCert });
    expect((await loginThrough(wrongCa)).ok).toBe(false);
  });

  test("disable against a server that requires TLS is refused", async () => {
    const p = await proxyWithTls({ server_sslmode: "disable" });
    const r = await loginThrough(p);
    expect(r.ok).toBe(false);
  });
});
