// The checks that decide whether a boot is good: systemd units that must be active, containers
// that must be running, programs that must exit 0. A boot is blessed because these pass, not
// because the host stayed up for a while; a check that cannot be evaluated counts as failed.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, timeoutSignal } from '../timers.js';

export type HealthCheck =
  | { kind: 'unit'; name: string; timeout: number }
  | { kind: 'container'; name: string; timeout: number }
  /** Program first, run without a shell. */
  | { kind: 'command'; command: string[]; timeout: number };

export interface HealthConfig {
  /** Seconds for all checks together. */
  timeout: number;
  /** Each with its own timeout in seconds; all run at once. */
  checks: HealthCheck[];
}

export type CheckStatus = 'passed' | 'failed' | 'timed-out';

export interface CheckResult {
  /** Like `unit nginx.service` or `command /usr/bin/curl -fsS http://localhost/`. */
  name: string;
  kind: HealthCheck['kind'];
  /** failed: an attempt said no and none said yes; timed-out: no attempt answered before the deadline. */
  status: CheckStatus;
  attempts: number;
  seconds: number;
  /** The end of what the last attempt printed, or the state it saw. */
  output: string;
}

export interface HealthReport {
  ok: boolean;
  checks: CheckResult[];
}

export interface HealthProbes {
  /**
   * A container's state as `cairn ps --json` reports it (`running`, `exited`, …), undefined when
   * there is no such container. Without it, container checks fail: nothing could confirm them.
   */
  containerState?: (name: string, signal: AbortSignal) => Promise<string | undefined>;
  /** The systemctl to ask about units. */
  systemctl?: string;
  /** Pause between attempts of a check that has not passed yet. */
  retryDelayMs?: number;
}

/** What an attempt printed is kept up to this many bytes, from the end. */
const OUTPUT_TAIL = 4096;
const DEFAULT_RETRY_DELAY_MS = 2000;

/** Runs every check at once, each retried until it passes or its deadline (own or overall) comes. */
export async function runHealthChecks(config: HealthConfig, probes: HealthProbes = {}): Promise<HealthReport> {
  const started = Date.now();
  const overall = started + config.timeout * 1000;
  const checks = await Promise.all(config.checks.map((check) => runCheck(check, Math.min(overall, started + check.timeout * 1000), probes)));
  return { ok: checks.every((c) => c.status === 'passed'), checks };
}

interface Attempt {
  status: CheckStatus;
  output: string;
  /** No point trying again (the program does not exist, no runtime to ask). */
  final?: boolean;
}

async function runCheck(check: HealthCheck, deadline: number, probes: HealthProbes): Promise<CheckResult> {
  const started = Date.now();
  const delay = probes.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  let attempts = 0;
  let last: Attempt;
  // An attempt cut by the deadline says less than an earlier one that answered no.
  let answered: Attempt | undefined;
  for (;;) {
    attempts++;
    last = await attempt(check, deadline, probes);
    if (last.status === 'failed') answered = last;
    const remaining = deadline - Date.now();
    if (last.status !== 'failed' || last.final || remaining <= 0) break;
    await sleep(Math.min(delay, remaining));
    if (Date.now() >= deadline) break;
  }
  const outcome = last.status === 'timed-out' && answered ? answered : last;
  return { name: describe(check), kind: check.kind, status: outcome.status, attempts, seconds: (Date.now() - started) / 1000, output: outcome.output };
}

function describe(check: HealthCheck): string {
  return check.kind === 'command' ? `command ${check.command.join(' ')}` : `${check.kind} ${check.name}`;
}

async function attempt(check: HealthCheck, deadline: number, probes: HealthProbes): Promise<Attempt> {
  switch (check.kind) {
    case 'command': {
      const run = await runUntil(check.command, deadline);
      return { status: run.status, output: run.output, final: run.spawnError };
    }
    case 'unit': {
      const run = await runUntil([probes.systemctl ?? 'systemctl', 'is-active', check.name], deadline);
      // is-active prints the state (active, activating, failed, …) and exits 0 only for active.
      return { status: run.status, output: run.output, final: run.spawnError };
    }
    case 'container': {
      if (!probes.containerState) return { status: 'failed', output: 'no container runtime to ask', final: true };
      const signal = timeoutSignal(Math.max(0, deadline - Date.now()));
      try {
        const state = await probes.containerState(check.name, signal);
        if (signal.aborted) return { status: 'timed-out', output: 'the runtime did not answer in time' };
        return { status: state === 'running' ? 'passed' : 'failed', output: state === undefined ? 'no such container' : `state: ${state}` };
      } catch (err) {
        return { status: signal.aborted ? 'timed-out' : 'failed', output: `cannot ask the runtime: ${(err as Error).message}` };
      }
    }
  }
}

interface Run {
  status: CheckStatus;
  output: string;
  spawnError: boolean;
}

/** Runs a program (no shell) and kills its whole process group if it is still running at `deadline`. */
function runUntil(command: string[], deadline: number): Promise<Run> {
  return new Promise((resolve) => {
    let tail = Buffer.alloc(0);
    const keep = (data: Buffer): void => {
      tail = Buffer.concat([tail, data]);
      if (tail.length > OUTPUT_TAIL) tail = tail.subarray(tail.length - OUTPUT_TAIL);
    };
    const output = (): string => tail.toString('utf8').trim();
    // Its own process group, so a timeout also ends whatever it started.
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let timedOut = false;
    const timer = after(Math.max(0, deadline - Date.now()), () => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone between the deadline and the kill.
      }
    });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => {
      timer.clear();
      resolve({ status: 'failed', output: `cannot run ${command[0]}: ${err.message}`, spawnError: true });
    });
    child.on('close', (code, signal) => {
      timer.clear();
      if (timedOut) resolve({ status: 'timed-out', output: output() || 'no output before the deadline', spawnError: false });
      else if (code === 0) resolve({ status: 'passed', output: output(), spawnError: false });
      else resolve({ status: 'failed', output: output() || (signal ? `killed by ${signal}` : `exit code ${code}`), spawnError: false });
    });
  });
}
