// Password rotation without [[users]] (RELIABILITY D1): after ALTER ROLE ... PASSWORD and a reload, a passthrough proxy follows the server.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startProxy, type RunningProxy } from "../support/proxy.ts";
import { startPgInstance, type PgInstance } from "../support/pg-instance.ts";
import { loginOutcome } from "../support/wire.ts";

let inst: PgInstance;
let proxy: RunningProxy;

beforeAll(async () => {
  inst = await startPgInstance({ databases: ["rot"], hba: ["host all all 127.0.0.1/32 scram-sha-256"] });
  await inst.psql("CREATE ROLE rot_pass LOGIN PASSWORD 'old-pass'");
  proxy = await startProxy({ nodes: [{ host: "127.0.0.1", port: inst.port }] });
}, 60000);

afterAll(async () => {
  await proxy?.stop();
  await inst?.destroy();
}, 60000);

const login = (port: number, user: string, password: string): Promise<string> => loginOutcome(port, { user, database: "rot" }, password);

describe("D1 password rotation, passthrough", () => {
  test("after ALTER ROLE and a reload the new password logs in and the old one is refused", async () => {
    expect(await login(proxy.port, "rot_pass", "old-pass")).toBe("ok");
    expect(await login(proxy.port, "rot_pass", "old-pass")).toBe("ok");
    await inst.psql("ALTER ROLE rot_pass PASSWORD 'new-pass'");
    proxy.proc.kill("SIGHUP");
    await Bun.sleep(500);
    expect(await login(proxy.port, "rot_pass", "new-pass")).toBe("ok");
    expect(await login(proxy.port, "rot_pass", "old-pass")).toBe("28P01");
  }, 30000);
});
