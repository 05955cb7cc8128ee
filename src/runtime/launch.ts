// Starting native/spawn for a spec. The helper is the container's supervisor: it stays the
// parent of the container's init, forwards signals and writes the exit line, so a detached
// container needs no Node process (a static C process of a few hundred KiB per container,
// instead of a Node runtime each). Node starts it in a session of its own (setsid), so it
// outlives `cairn run -d` and a terminal's ^C reaches the container once, through us.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { CairnError } from '../errors.js';
import { encodeSpec, type ContainerSpec } from './spec.js';
import { parseExitLine, type ExitInfo } from './state.js';
import { spawnCandidates } from '../install.js';

/** Where the helper is: beside the compiled code in a checkout, or where images install it. */
export function spawnHelperPath(): string {
  const candidates = spawnCandidates();
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new CairnError(`the container helper is missing (looked in ${candidates.join(', ')})`, 'build it with "make -C native" (npm run build does)');
  return found;
}

export interface LaunchOptions {
  /** The container's stdin, stdout, stderr: the caller's own, or descriptors (a log file). */
  stdio: 'inherit' | [number | 'ignore', number, number];
  exitFile: string;
  /**
   * Foreground: the container dies with the `cairn run` that shows it, and the signals that
   * command receives go to the container from the moment the helper exists.
   */
  foreground: boolean;
}

export interface Launched {
  supervisor: ChildProcess;
  /** The container's init, as the host sees it. */
  initPid: number;
  /** The cgroup directories the helper made (and removes, unless it is killed). */
  cgroups: string[];
  /** The command's exit, from the helper's report (or its own death). */
  exited: Promise<ExitInfo>;
  /** Lets the caller exit while the container runs on. */
  detach(): void;
}

/** A container that could not start; `code` is the helper's: 125 setup, 126 cannot execute, 127 no such command. */
export class ContainerStartError extends CairnError {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

/** Starts the container; resolves once its command has been executed, rejects with the helper's one-line error. */
export function launch(spec: ContainerSpec, options: LaunchOptions): Promise<Launched> {
  const encoded = encodeSpec(spec);
  const args = ['--report-fd', '4', '--exit-file', options.exitFile, ...(options.foreground ? ['--die-with-parent'] : []), '--spec-fd', '3'];
  const stdio: StdioOptions = [...(options.stdio === 'inherit' ? (['inherit', 'inherit', 'inherit'] as const) : options.stdio), 'pipe', 'pipe'];
  const child: ChildProcess = spawn(spawnHelperPath(), args, { stdio, detached: true });
  if (options.foreground) {
    const stopForwarding = forwardSignals(child);
    child.on('close', stopForwarding);
  }
  const specPipe = child.stdio[3] as Writable;
  const report = child.stdio[4] as Readable;
  specPipe.on('error', () => undefined); // a helper that fails early reports why on the report pipe
  specPipe.end(encoded);

  let buffered = '';
  let started: ((pid: number) => void) | undefined;
  let failed: ((err: Error) => void) | undefined;
  let exitLine: ExitInfo | null = null;
  let errorLine: string | null = null;
  const cgroups: string[] = [];
  const startedPromise = new Promise<number>((res, rej) => {
    started = res;
    failed = rej;
  });
  report.setEncoding('utf8');
  report.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('cgroup ')) cgroups.push(line.slice(7));
      else if (line.startsWith('started ')) started?.(Number(line.slice(8)));
      else if (line.startsWith('error ')) errorLine = line.slice(6);
      else exitLine = parseExitLine(line) ?? exitLine;
    }
  });
  const exited = new Promise<ExitInfo>((res, rej) => {
    child.on('error', (err) => {
      const e = new CairnError(`cannot start the container helper: ${err.message}`, 'rebuild it with "make -C native"');
      failed?.(e);
      rej(e);
    });
    child.on('close', (code, signal) => {
      if (exitLine) return res(exitLine);
      if (errorLine !== null) {
        const e = new ContainerStartError(`container ${spec.name}: ${errorLine}`, code ?? 125);
        failed?.(e);
        return rej(e);
      }
      // the helper itself was killed or failed without a report line
      const sig = signal ? constants.signals[signal] : 0;
      failed?.(new CairnError(`container ${spec.name}: the helper ended (${signal ?? `exit code ${code}`}) before the command started`));
      res({ code: sig ? 128 + sig : (code ?? 125), signal: sig, oomKilled: false });
    });
  });
  exited.catch(() => undefined); // the start promise carries the same failure

  return startedPromise.then((initPid) => ({
    supervisor: child,
    initPid,
    cgroups,
    exited,
    detach: () => {
      report.destroy();
      child.unref();
    },
  }));
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Passes the signals `cairn run` receives to the supervisor, which passes them to the command. Returns the undo. */
function forwardSignals(supervisor: ChildProcess): () => void {
  const handlers = FORWARDED.map((sig) => {
    const handler = () => supervisor.kill(sig);
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}
