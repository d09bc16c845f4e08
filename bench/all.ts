// Runs every benchmark in turn (pgbench comparison, then idle clients), passing on the shared flags: --quick, --no-doc, --note TEXT, --helios-bin PATH.

import { join } from "node:path";

const SHARED_SWITCHES = new Set(["--quick", "--no-doc"]);
const SHARED_VALUES = new Set(["--note", "--helios-bin"]);

const argv = process.argv.slice(2);
const shared: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  const flag = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
  if (SHARED_SWITCHES.has(flag)) shared.push(a);
  else if (SHARED_VALUES.has(flag)) shared.push(...(a.includes("=") ? [a] : [a, argv[++i] ?? ""]));
  else {
    console.error(`bench/all.ts passes on only --quick, --no-doc, --note, --helios-bin (got ${a}); run a script in bench/ directly for its own options`);
    process.exit(2);
  }
}

let failed = 0;
for (const script of ["pgbench-compare.ts", "idle-clients.ts"]) {
  console.log(`\n=== bench/${script} ${shared.join(" ")}`);
  const p = Bun.spawn([process.execPath, join(import.meta.dir, script), ...shared], { stdio: ["inherit", "inherit", "inherit"] });
  if ((await p.exited) !== 0) failed++;
}
process.exit(failed ? 1 : 0);
