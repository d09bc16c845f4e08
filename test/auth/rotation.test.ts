// Password rotation for [[users]] (RELIABILITY D1): ALTER ROLE ... PASSWORD, then a SIGHUP reload; the old password stops working, new server logins use the new one.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { configText, freePort, startProxyWithConfig, writeConfig, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, waitFor, type PgInstance } from "../support/pg-instance.ts";
import { loginOutcome } from "../support/wire.ts";

let inst: PgInstance;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["rot"], hba: ["host all all 127.0.0.1/32 scram-sha-256"] });
  await inst.psql("CREATE ROLE rot_plain LOGIN PASSWORD 'old-plain'; CREATE ROLE rot_verifier LOGIN PASSWORD 'old-verifier'");
}, 60000);

afterAll(async () => {
  for (const p of proxies) await p.stop();
  await inst?.destroy();
}, 60000);

const login = (port: number, user: string, password: string): Promise<string> => loginOutcome(port, { user, database: "rot" }, password);

async function terminateBackends(user: string): Promise<void> {
  await inst.psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${user}'`);
  await waitFor(`${user}'s backends to exit`, async () => (await inst.psql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${user}'`)) === "0", 5000);
}

async function proxyWithUsers(users: (p: Record<string, string>) => string, initial: Record<string, string>) {
  const port = freePort();
  const admin = freePort();
  const text = (pw: Record<string, string>) => configText(port, admin, { nodes: [{ host: "127.0.0.1", port: inst.port }], toml: users(pw) });
  const path = writeConfig(text(initial));
  const p = await startProxyWithConfig(path, port, admin);
  proxies.push(p);
  return {
    p,
    async rewrite(pw: Record<string, string>) {
      writeFileSync(path, text(pw));
      p.proc.kill("SIGHUP");
    },
  };
}

describe("D1 password rotation", () => {
  test("[[users]]: after ALTER ROLE and a reload the new password logs in, the old one does not, and new server logins work", async () => {
    const users = (pw: Record<string, string>) =>
      `[[users]]\nname = "rot_plain"\npassword = "${pw.plain}"\n` +
      `[[users]]\nname = "rot_verifier"\npassword = "${pw.verifier}"\nserver_password = "${pw.verifierServer}"\n`;
    const verifier = async () => inst.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'rot_verifier'");
    const { p, rewrite } = await proxyWithUsers(users, { plain: "old-plain", verifier: await verifier(), verifierServer: "old-verifier" });
    expect(await login(p.port, "rot_plain", "old-plain")).toBe("ok");
    expect(await login(p.port, "rot_verifier", "old-verifier")).toBe("ok");

    await inst.psql("ALTER ROLE rot_plain PASSWORD 'new-plain'; ALTER ROLE rot_verifier PASSWORD 'new-verifier'");
    await rewrite({ plain: "new-plain", verifier: await verifier(), verifierServer: "new-verifier" });
    await waitFor("the reload to take the new password", async () => (await login(p.port, "rot_plain", "new-plain")) === "ok", 5000);
    await waitFor("the reload to take the new verifier", async () => (await login(p.port, "rot_verifier", "new-verifier")) === "ok", 5000);
    expect(await login(p.port, "rot_plain", "old-plain")).toBe("28P01");
    expect(await login(p.port, "rot_verifier", "old-verifier")).toBe("28P01");

    // Servers opened from now on log in with the new password.
    await terminateBackends("rot_plain");
    await terminateBackends("rot_verifier");
    expect(await login(p.port, "rot_plain", "new-plain")).toBe("ok");
    expect(await login(p.port, "rot_verifier", "new-verifier")).toBe("ok");
  }, 30000);
});
