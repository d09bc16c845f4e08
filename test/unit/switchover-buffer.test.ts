// Switchover buffer: holds only while holding, bounded by count and time, releases oldest first; and primary_conninfo rewriting.

import { describe, expect, test } from "bun:test";
import { SwitchoverBuffer, type HeldClient } from "../../src/cluster/switchover-buffer.ts";
import { rewriteConninfo, sqlLiteral } from "../../src/cluster/node-sql.ts";

function client(log: string[], name: string): HeldClient {
  return { released: () => log.push(`${name} released`), refused: (code, message) => log.push(`${name} ${code} ${message}`) };
}

describe("SwitchoverBuffer", () => {
  test("admits nothing while not holding; releases everyone in order; counts waits", () => {
    const log: string[] = [];
    const b = new SwitchoverBuffer({ timeoutMs: 1000, maxClients: 10 });
    expect(b.admit(client(log, "a"))).toBe(false);
    expect(b.hold("switchover from node1")).toBe(true);
    expect(b.hold("again")).toBe(false);
    expect(b.why).toBe("switchover from node1");
    expect(b.admit(client(log, "a"))).toBe(true);
    expect(b.admit(client(log, "b"))).toBe(true);
    expect(b.size).toBe(2);
    expect(b.release()).toBe(2);
    expect(log).toEqual(["a released", "b released"]);
    expect(b.active).toBe(false);
    expect(b.stats).toMatchObject({ released: 2, refused: 0, holds: 1 });
  });

  test("full: refused at once with 53300; late: refused with 57P03 naming the setting; forgotten clients hear nothing", () => {
    const log: string[] = [];
    const b = new SwitchoverBuffer({ timeoutMs: 100, maxClients: 2 });
    b.hold("failover from node1");
    const gone = client(log, "gone");
    b.admit(gone);
    b.admit(client(log, "late"));
    b.admit(client(log, "extra"));
    expect(log).toEqual(["extra 53300 the primary is changing (failover from node1) and 2 requests already wait for it"]);
    b.forget(gone);
    b.expire(performance.now() + 50);
    expect(log).toHaveLength(1);
    b.expire(performance.now() + 500);
    expect(log[1]).toBe("late 57P03 the primary is changing (failover from node1); the request waited 0.1 s (failover.buffer_timeout_secs)");
    expect(b.size).toBe(0);
    expect(b.release()).toBe(0);
    expect(b.stats.refused).toBe(2);
  });
});

describe("rewriteConninfo", () => {
  test("host and port replaced, hostaddr dropped, everything else kept and quoted", () => {
    expect(rewriteConninfo("user=postgres host=10.0.0.1 port=5432 application_name=node3 sslmode=prefer", "10.0.0.2", 5433)).toBe(
      "host=10.0.0.2 port=5433 user=postgres application_name=node3 sslmode=prefer",
    );
    expect(rewriteConninfo("hostaddr=10.0.0.1 password='it\\'s a \\\\ ' application_name = 'my node'", "h", 1)).toBe(
      "host=h port=1 password='it\\'s a \\\\ ' application_name='my node'",
    );
    expect(rewriteConninfo("", "h", 2)).toBe("host=h port=2");
  });

  test("sqlLiteral doubles quotes", () => {
    expect(sqlLiteral("host=h password='a'")).toBe("'host=h password=''a'''");
  });
});
