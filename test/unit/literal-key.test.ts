// The literal-masking cache key: literals masked, everything that decides a statement's kind kept.

import { expect, test } from "bun:test";
import { literalKey } from "../../src/sql/literal-key.ts";

test.each([
  ["SELECT a FROM t WHERE id = 42", "SELECT a FROM t WHERE id = ?"],
  ["select * from t where s = 'it''s' and n = 1.5e3", "select * from t where s = ? and n = ?"],
  ["select E'a\\'b', e'x'", "select ?, ?"],
  ["select $$a 'b' 1$$, $t$x$t$", "select ?, ?"],
  ["select $1, $2 from t2 where c3 = 3", "select $1, $2 from t2 where c3 = ?"],
  ['select "col 1", "x""y" from "t 9"', 'select "col 1", "x""y" from "t 9"'],
  ["select 1 -- comment 2\nfrom t", "select ? -- comment 2\nfrom t"],
  ["no literals here", "no literals here"],
])("%s", (sql, key) => {
  expect(literalKey(sql)).toBe(key);
});

test("unterminated literals do not throw and mask to the end", () => {
  expect(literalKey("select 'abc")).toBe("select ?");
  expect(literalKey("select $q$abc")).toBe("select ?");
});
