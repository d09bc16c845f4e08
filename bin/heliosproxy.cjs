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
  // The child watches this pid and stops itself if the wrapper dies without passing a signal on (SIGKILL, OOM).
  { stdio: "inherit", env: { ...process.env, HELIOSPROXY_PARENT_PID: String(process.pid) } },
);

const forwarded = ["SIGTERM", "SIGINT", "SIGHUP"];
const forward = (sig) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
};
for (const sig of forwarded) process.on(sig, () => forward(sig));

// `npm exec` forwards SIGINT/SIGTERM to the shell it runs bins under. The project's .npmrc makes that
// shell bash, which execs this wrapper, so the signal arrives here. Under plain `sh -c` (dash, another
// project's npm config) the shell holds SIGINT until its child ends and dies on SIGTERM without passing
// it on: losing the parent means someone stopped us, so the child is stopped too.
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
