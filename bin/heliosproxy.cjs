#!/usr/bin/env node
// Runs heliosproxy from a checkout: starts the project's own Bun on src/cli/main.ts, forwarding args, signals and exit code.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");

const root = path.resolve(__dirname, "..");

let bun;
try {
  bun = require.resolve("bun/bin/bun.exe", { paths: [root] });
} catch {
  process.stderr.write("heliosproxy: the bun package is not installed here; run `npm ci` in " + root + "\n");
  process.exit(1);
}

// bunfig.toml carries the dev feature defines; name it explicitly so any working directory works.
const child = spawn(
  bun,
  [`--config=${path.join(root, "bunfig.toml")}`, path.join(root, "src/cli/main.ts"), ...process.argv.slice(2)],
  { stdio: "inherit" },
);

const forwarded = ["SIGTERM", "SIGINT", "SIGHUP"];
const forward = (sig) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
};
for (const sig of forwarded) process.on(sig, () => forward(sig));

// Under `npx`/`npm exec` the parent is a `sh -c` that dies on SIGINT/SIGTERM without passing it on:
// losing the parent means someone stopped us, so the child is stopped too (instead of running on orphaned).
const parentAtStart = process.ppid;
const orphanWatch = setInterval(() => {
  if (process.ppid !== parentAtStart) {
    clearInterval(orphanWatch);
    forward("SIGTERM");
  }
}, 250);
orphanWatch.unref();

child.on("error", (err) => {
  process.stderr.write(`heliosproxy: cannot start ${bun}: ${err.message}\n`);
  process.exit(1);
});

child.on("exit", (code, signal) => {
  if (signal) {
    // Die the same way the child did, so callers see the real cause.
    for (const sig of forwarded) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
