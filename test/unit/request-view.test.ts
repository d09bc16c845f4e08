// The request view: each fact of a client message (text, statement name, effects, write classification) is computed once, only when asked, and forgotten at the next message.

import { expect, test } from "bun:test";
import { RequestCtx } from "../../src/client/request-ctx.ts";
import { entryForParse, type StatementEntry } from "../../src/client/prepared.ts";
import { Fe } from "../../src/protocol/codes.ts";
import { build } from "../../src/protocol/writer.ts";
import { Effect } from "../../src/sql/session-effects.ts";
import { QueryShapeCache } from "../../src/sql/fingerprint.ts";

function viewWith(statements = new Map<string, StatementEntry>()) {
  const classified: string[] = [];
  const parsed: string[] = [];
  const v = new RequestCtx({
    statements,
    shapes: new QueryShapeCache(),
    parser: (sql) => (parsed.push(sql), { sql }),
    classifier: { isWrite: (sql) => (classified.push(sql), !/^\s*select/i.test(sql)) },
    statelessFunctions: new Set(),
  });
  return { v, classified, parsed, statements };
}

const query = (sql: string) => build((w) => w.msg(Fe.Query).cstr(sql).end());
const parse = (name: string, sql: string) => build((w) => w.msg(Fe.Parse).cstr(name).cstr(sql).int16(0).end());
const bind = (portal: string, name: string) => build((w) => w.msg(Fe.Bind).cstr(portal).cstr(name).int16(0).int16(0).int16(0).end());
const close = (kind: "S" | "P", name: string) => build((w) => w.msg(Fe.Close).byte(kind.charCodeAt(0)).cstr(name).end());
const at = (v: RequestCtx, m: Uint8Array) => v.at(m[0]!, m, 0, m.length);

test("a Query's text is decoded once and classified once, however many ask", () => {
  const { v, classified } = viewWith();
  const m = query("UPDATE t SET a = 1");
  at(v, m);
  const first = v.sql();
  expect(v.sql()).toBe("UPDATE t SET a = 1");
  expect(v.sql()).toBe(first); // the same string object: memoised, not decoded again
  expect(new TextDecoder().decode(v.textBytes()!)).toBe("UPDATE t SET a = 1");
  expect([v.isWrite(), v.isWrite(), v.isWrite()]).toEqual([true, true, true]);
  expect(classified).toEqual(["UPDATE t SET a = 1"]);
  expect(v.statementName()).toBe("");
});

test("nothing is computed until asked, and moving to the next message forgets the last one's facts", () => {
  const { v, classified } = viewWith();
  at(v, query("SELECT 1"));
  expect(classified).toEqual([]);
  expect(v.isWrite()).toBe(false);
  at(v, query("SET search_path = x"));
  expect(v.sql()).toBe("SET search_path = x");
  expect(v.effects() & Effect.SetGuc).toBe(Effect.SetGuc);
  expect(v.spans().length).toBe(1);
  expect(v.isWrite()).toBe(true);
  expect(classified).toEqual(["SELECT 1", "SET search_path = x"]);
  at(v, query("SELECT 2"));
  expect(v.effects()).toBe(Effect.None);
  expect(v.spans()).toEqual([]);
});

test("statement names: a Parse's own, the one a Bind runs (and its kept text), a Close's target", () => {
  const p = parse("s1", "INSERT INTO t VALUES ($1)");
  const statements = new Map<string, StatementEntry>([["s1", entryForParse(p, p.indexOf(0, 5), p.length)]]);
  const { v } = viewWith(statements);
  at(v, p);
  expect([v.statementName(), v.sql(), v.nameStart(), v.nameEnd()]).toEqual(["s1", "INSERT INTO t VALUES ($1)", 5, 7]);
  at(v, bind("portal", "s1"));
  expect(v.statementName()).toBe("s1");
  expect(v.statement()).toBe(statements.get("s1")!);
  expect(v.sql()).toBe("INSERT INTO t VALUES ($1)");
  at(v, bind("", "nope"));
  expect([v.statementName(), v.statement(), v.sql(), v.isWrite()]).toEqual(["nope", undefined, "", true]);
  at(v, close("S", "s1"));
  expect(v.statementName()).toBe("s1");
  // Malformed: no NUL before the end of the message.
  const bad = close("S", "s1").subarray(0, 8);
  v.at(Fe.Close, bad, 0, bad.length);
  expect([v.nameEnd(), v.statementName()]).toEqual([-1, ""]);
});

test("a view a module keeps is settled with its text; the forwarder goes on with a fresh one at the same message", () => {
  const { v, parsed } = viewWith();
  at(v, query("SELECT * FROM orders"));
  v.begin({ id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0 }, "I", v.end);
  const facts = v.facts();
  expect(v.facts()).toBe(facts);
  expect(v.fingerprint()).toBe(facts.fingerprint);
  const next = v.handOver();
  expect(next).not.toBe(v);
  expect([v.sql(), next.sql()]).toEqual(["SELECT * FROM orders", "SELECT * FROM orders"]);
  expect(v.parse()).toEqual({ sql: "SELECT * FROM orders" });
  expect(v.parse()).toBe(v.parse());
  expect(parsed).toEqual(["SELECT * FROM orders"]);
  // The kept view no longer reads the receive buffer: its bytes are a copy.
  expect(v.sqlBytes().buffer).not.toBe(next.sqlBytes().buffer);
  expect(new TextDecoder().decode(v.sqlBytes())).toBe("SELECT * FROM orders");
});

test("the text's bytes in place (sqlSpan), a copy once settled; no copy when no result hook reads texts", () => {
  const { v } = viewWith();
  const m = query("UPDATE t SET a = 1 WHERE id = 7");
  at(v, m);
  const span = { bytes: new Uint8Array(0), from: 0, to: 0 };
  v.sqlSpan(span);
  expect(span.bytes === m).toBe(true); // no view made
  expect(new TextDecoder().decode(m.subarray(span.from, span.to))).toBe("UPDATE t SET a = 1 WHERE id = 7");
  const next = v.handOver(true);
  m.fill(0x20); // the receive buffer moves on
  v.sqlSpan(span);
  expect(new TextDecoder().decode(span.bytes.subarray(span.from, span.to))).toBe("UPDATE t SET a = 1 WHERE id = 7");
  expect(v.sql()).toBe("UPDATE t SET a = 1 WHERE id = 7"); // decoded from the copy, when asked
  // Nobody reads texts in onResult: nothing is copied; a text already decoded stays.
  at(next, query("DELETE FROM t WHERE id = 8"));
  const third = next.handOver(false);
  expect([next.sqlBytes().length, next.sql()]).toEqual([0, ""]);
  at(third, query("DELETE FROM t WHERE id = 9"));
  expect(third.sql()).toBe("DELETE FROM t WHERE id = 9");
  third.handOver(false);
  expect(third.sql()).toBe("DELETE FROM t WHERE id = 9");
});

test("a recycled view forgets its request and settles nothing of it into the next one", () => {
  const { v } = viewWith();
  at(v, query("SET search_path = x; SELECT 1"));
  v.begin({ id: 1, user: "u", database: "d", applicationName: "", remoteAddress: "", tls: false, startedAt: 0 }, "I", v.end);
  v.effects();
  v.captureReply(100);
  const next = v.handOver(true);
  expect(v.sql()).toBe("SET search_path = x; SELECT 1");
  v.recycle();
  // Handed over to again, at another message: only what the next request's view carries.
  at(next, query("UPDATE t SET a = 2"));
  const same = next.handOver(false, v);
  expect(same).toBe(v);
  expect([same.sql(), same.effects(), same.spans().length, same.captureMax]).toEqual(["UPDATE t SET a = 2", Effect.None, 0, 0]);
  expect(new TextDecoder().decode(same.sqlBytes())).toBe("UPDATE t SET a = 2");
});

test("session effects a module read are handed over with the view: the forwarder does not scan the text again", () => {
  const { v } = viewWith();
  at(v, query("SET search_path = x; SELECT 1"));
  const fx = v.effects();
  const span = v.spans()[0]!;
  const next = v.handOver();
  expect(next.effects()).toBe(fx);
  expect(next.spans()[0]).toBe(span); // the same span object: not scanned again
  expect(new TextDecoder().decode(next.textBytes()!)).toBe("SET search_path = x; SELECT 1");
  // A view whose effects nobody read hands over none: the next one scans when asked.
  at(next, query("RESET ALL"));
  const after = next.handOver();
  expect(after.effects() & Effect.SetGuc).toBe(Effect.SetGuc);
});
