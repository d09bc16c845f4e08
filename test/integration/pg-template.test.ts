// The test servers' data directories: copies of one prepared directory (one system identifier, the postgres user's, mode 0700) unless freshInitdb asks for initdb.

import { expect, test } from "bun:test";
import { statSync } from "node:fs";
import { startPgInstance } from "../support/pg-instance.ts";

const sysid = "SELECT system_identifier FROM pg_control_system()";

test("copied data directories share a system identifier; freshInitdb gives a server one of its own", async () => {
  const [a, b, fresh] = await Promise.all([startPgInstance(), startPgInstance(), startPgInstance({ freshInitdb: true })]);
  try {
    const [ida, idb, idf] = await Promise.all([a.psql(sysid), b.psql(sysid), fresh.psql(sysid)]);
    expect(ida).toMatch(/^\d+$/);
    expect(idb).toBe(ida);
    expect(idf).not.toBe(ida);
    for (const inst of [a, b]) {
      const st = statSync(inst.dataDir);
      expect(st.mode & 0o777).toBe(0o700);
      expect(st.uid).toBe(statSync(fresh.dataDir).uid);
      // A copy is a server of its own: writes to one are not seen by the other.
      await inst.psql(`CREATE TABLE only_here_${inst.port} (id int)`);
    }
    expect(await b.psql(`SELECT count(*) FROM pg_class WHERE relname = 'only_here_${a.port}'`)).toBe("0");
  } finally {
    await Promise.all([a.destroy(), b.destroy(), fresh.destroy()]);
  }
});
