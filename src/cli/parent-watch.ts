// Stops the process (as SIGTERM would) when the launcher named in HELIOSPROXY_PARENT_PID is gone, so a killed bin wrapper leaves no orphan proxy.

/** The environment variable bin/heliosproxy.cjs sets to its own pid for the process it starts. */
export const PARENT_PID_ENV = "HELIOSPROXY_PARENT_PID";

/**
 * When `HELIOSPROXY_PARENT_PID` names our parent, checks every `everyMs` that it still is; once it is not
 * (the parent died and we were re-parented), sends ourselves SIGTERM so the running command's own
 * shutdown path runs (the proxy drains, the demo removes its cluster). No-op without the variable.
 */
export function watchParent(everyMs = 250): void {
  const expected = Number(process.env[PARENT_PID_ENV]);
  delete process.env[PARENT_PID_ENV]; // for this process only, not for what it starts
  if (!Number.isInteger(expected) || expected <= 1 || process.ppid !== expected) return;
  const timer = setInterval(() => {
    if (process.ppid === expected) return;
    clearInterval(timer);
    process.kill(process.pid, "SIGTERM");
  }, everyMs);
  timer.unref();
}
