// Login, refused-login and disconnect lines at info level with the client's address; log_connections / log_disconnections turn them off.

import { expect, test } from "bun:test";
import * as W from "../support/wire.ts";
import { waitFor } from "../support/pg-instance.ts";
import { configText, freePort, startProxyWithConfig, writeConfig, type RunningProxy } from "../support/proxy.ts";

const USERS = `[[users]]\nname = "postgres"\npassword = "pw"\nserver_password = ""\n`;

async function proxyLogging(proxyKeys: string): Promise<RunningProxy> {
  const port = freePort();
  const admin = freePort();
  const text = configText(port, admin, { toml: USERS }).replace('log_level = "warn"', `log_level = "info"\n${proxyKeys}`);
  return startProxyWithConfig(writeConfig(text), port, admin);
}

/** Log lines (text format) whose message is `msg`. */
const lines = (p: RunningProxy, msg: string) => p.output().split("\n").filter((l) => new RegExp(`^\\S+ INFO +${msg} \\w+=`).test(l));

test("a login, a refused login and a disconnect are logged with the client's host:port", async () => {
  await using proxy = await proxyLogging("");
  const ok = await W.login(proxy.port, { user: "postgres", database: "test" }, { password: "pw" });
  const localPort = ok.conn.socket.localPort!;
  await ok.conn.query("select 1");
  ok.conn.quit();
  expect(await W.loginOutcome(proxy.port, { user: "postgres", database: "test" }, "wrong")).toBe("28P01");
  await waitFor("the disconnect line", () => lines(proxy, "disconnect").length > 0);
  const login = lines(proxy, "login");
  expect(login.length).toBe(1);
  expect(login[0]).toContain(`client=127.0.0.1:${localPort}`);
  expect(login[0]).toContain("user=postgres");
  expect(login[0]).toContain("database=test");
  const refused = lines(proxy, "login refused");
  expect(refused.length).toBe(1);
  expect(refused[0]).toContain("sqlstate=28P01");
  expect(refused[0]).toContain("client=127.0.0.1:");
  const gone = lines(proxy, "disconnect");
  expect(gone.length).toBe(1);
  expect(gone[0]).toContain(`client=127.0.0.1:${localPort}`);
  expect(gone[0]).toMatch(/duration_s=\d/);
});

test("log_connections = false and log_disconnections = false: none of these lines", async () => {
  await using proxy = await proxyLogging("log_connections = false\nlog_disconnections = false");
  const ok = await W.login(proxy.port, { user: "postgres", database: "test" }, { password: "pw" });
  await ok.conn.query("select 1");
  ok.conn.quit();
  expect(await W.loginOutcome(proxy.port, { user: "postgres", database: "test" }, "wrong")).toBe("28P01");
  // A later login's query answered means the earlier disconnect was handled.
  expect(await W.loginOutcome(proxy.port, { user: "postgres", database: "test" }, "pw")).toBe("ok");
  expect(lines(proxy, "login")).toEqual([]);
  expect(lines(proxy, "login refused")).toEqual([]);
  expect(lines(proxy, "disconnect")).toEqual([]);
});
