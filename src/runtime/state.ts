// Where containers live. State that ends with the boot: /run/cairn/containers/<name>
// (state.json, the supervisor's exit line, the root's mount point). Data that outlives it:
// /var/lib/cairn/containers/<name> (var/, home/, root/, container.log). Both roots can be moved
// with CAIRN_RUN_DIR and CAIRN_STATE_DIR (tests use temporary directories).
import { mkdir, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { checkName, type NetMode } from './spec.js';

const STATE = 'state.json';
const EXIT = 'exit';
const STATE_MAX = 1 << 20;

export function runRoot(): string {
  return join(process.env.CAIRN_RUN_DIR ?? '/run/cairn', 'containers');
}

export function dataRoot(): string {
  return join(process.env.CAIRN_STATE_DIR ?? '/var/lib/cairn', 'containers');
}

export interface ContainerPaths {
  stateDir: string;
  dataDir: string;
  rootDir: string;
  exitFile: string;
  logFile: string;
}

export function containerPaths(name: string): ContainerPaths {
  checkName(name);
  const stateDir = join(runRoot(), name);
  const dataDir = join(dataRoot(), name);
  return { stateDir, dataDir, rootDir: join(stateDir, 'root'), exitFile: join(stateDir, EXIT), logFile: join(dataDir, 'container.log') };
}

/** A process identified beyond its pid: the start time in /proc/PID/stat, so a recycled pid is not mistaken for ours. */
export interface ProcessRef {
  pid: number;
  start: string;
}

export interface ContainerState {
  name: string;
  createdAt: string;
  command: string[];
  usr: string;
  net: NetMode;
  detached: boolean;
  supervisor?: ProcessRef;
  init?: ProcessRef;
  /** The helper's cgroup directories, for cleaning up after a supervisor that was killed. */
  cgroups?: string[];
}

export interface ExitInfo {
  code: number;
  signal: number;
  oomKilled: boolean;
}

export type Status = 'created' | 'running' | 'exited' | 'dead';

/** Field 22 of /proc/PID/stat, or null when there is no such process. */
export async function processStart(pid: number): Promise<string | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (text === null) return null;
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // a zombie is gone as far as a container is concerned
  return fields[0] === 'Z' ? null : (fields[19] ?? null);
}

export async function processRef(pid: number): Promise<ProcessRef | undefined> {
  const start = await processStart(pid);
  return start === null ? undefined : { pid, start };
}

export async function isAlive(ref: ProcessRef | undefined): Promise<boolean> {
  return ref !== undefined && (await processStart(ref.pid)) === ref.start;
}

/** "exited CODE SIGNAL OOM": the helper's last report line and the content of its exit file. */
export function parseExitLine(line: string): ExitInfo | null {
  const m = /^exited (\d{1,3}) (\d{1,2}) ([01])\n?$/.exec(line);
  return m ? { code: Number(m[1]), signal: Number(m[2]), oomKilled: m[3] === '1' } : null;
}

/** Makes the state and data directories; the state directory is the name's claim, so a second container of that name fails here. */
export async function createContainerDirs(name: string): Promise<ContainerPaths> {
  const paths = containerPaths(name);
  // traversable (not listable) by a user namespace's root, which mounts on rootDir from inside
  await mkdir(runRoot(), { recursive: true, mode: 0o711 });
  await mkdir(paths.stateDir, { mode: 0o711 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new CairnError(`a container named ${name} already exists`, `remove it with "cairn rm ${name}" or pick another --name`);
    throw err;
  });
  await mkdir(paths.rootDir);
  for (const dir of ['var', 'home', 'root']) await mkdir(join(paths.dataDir, dir), { recursive: true });
  return paths;
}

export async function writeState(state: ContainerState): Promise<void> {
  await writeFileAtomic(join(containerPaths(state.name).stateDir, STATE), JSON.stringify(state, null, 2) + '\n', 0o600);
}

function isRef(v: unknown): v is ProcessRef {
  const r = v as ProcessRef;
  return typeof r === 'object' && r !== null && Number.isInteger(r.pid) && r.pid > 0 && typeof r.start === 'string' && /^\d+$/.test(r.start);
}

/** state.json, checked: its pids are about to be signalled. */
export function parseState(text: string, where: string): ContainerState {
  let s: ContainerState;
  try {
    s = JSON.parse(text) as ContainerState;
  } catch (err) {
    throw new CairnError(`${where}: not JSON (${(err as Error).message})`, 'remove the container with "cairn rm"');
  }
  const ok =
    typeof s === 'object' &&
    s !== null &&
    typeof s.name === 'string' &&
    typeof s.createdAt === 'string' &&
    Array.isArray(s.command) &&
    s.command.every((c) => typeof c === 'string') &&
    typeof s.usr === 'string' &&
    typeof s.net === 'string' &&
    typeof s.detached === 'boolean' &&
    (s.supervisor === undefined || isRef(s.supervisor)) &&
    (s.init === undefined || isRef(s.init)) &&
    (s.cgroups === undefined || (Array.isArray(s.cgroups) && s.cgroups.every((c) => typeof c === 'string')));
  if (!ok) throw new CairnError(`${where}: not a container state file`, 'remove the container with "cairn rm"');
  return s;
}

export async function readState(name: string): Promise<ContainerState> {
  const file = join(containerPaths(name).stateDir, STATE);
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new CairnError(`no container named ${name}`, 'list them with "cairn ps"');
    throw err;
  });
  if (text.length > STATE_MAX) throw new CairnError(`${file}: larger than ${STATE_MAX} bytes`);
  const state = parseState(text, file);
  if (state.name !== name) throw new CairnError(`${file}: describes ${state.name}, not ${name}`);
  return state;
}

export async function readExit(name: string): Promise<ExitInfo | null> {
  const text = await readFile(containerPaths(name).exitFile, 'utf8').catch(() => null);
  return text === null ? null : parseExitLine(text);
}

export interface ContainerStatus {
  state: ContainerState;
  status: Status;
  exit: ExitInfo | null;
}

export async function containerStatus(state: ContainerState): Promise<ContainerStatus> {
  const exit = await readExit(state.name);
  if (exit) return { state, status: 'exited', exit };
  if (!state.supervisor) return { state, status: 'created', exit: null };
  if (await isAlive(state.supervisor)) return { state, status: 'running', exit: null };
  // The supervisor writes the exit file, then ends: it may have done both since the first read.
  const late = await readExit(state.name);
  return late ? { state, status: 'exited', exit: late } : { state, status: 'dead', exit: null };
}

export async function listContainers(): Promise<ContainerStatus[]> {
  const names = await readdir(runRoot()).catch(() => [] as string[]);
  const out: ContainerStatus[] = [];
  for (const name of names.sort()) {
    // a half-made directory (a start in progress or one that failed) is not listed
    const state = await readState(name).catch(() => null);
    if (state) out.push(await containerStatus(state));
  }
  return out;
}

/**
 * The cgroups a killed supervisor could not remove. Only directories named as the helper names
 * them (cairn-NAME-SUPERVISORPID) under /sys/fs/cgroup are touched, whatever state.json says;
 * rmdir removes nothing but an empty cgroup.
 */
export async function removeLeftCgroups(state: ContainerState): Promise<void> {
  const pattern = new RegExp(`^/sys/fs/cgroup/(?:[^/]+/)*cairn-${state.name.replace(/\./g, '\\.')}-${state.supervisor?.pid ?? 'none'}$`);
  for (const dir of state.cgroups ?? []) {
    if (!pattern.test(dir) || dir.split('/').includes('..')) continue;
    await rmdir(dir).catch(() => undefined); // gone already, or still busy: nothing of ours to force
  }
}

/** Deletes a container's state and data. The caller has made sure it is not running. */
export async function removeContainerDirs(name: string): Promise<void> {
  const paths = containerPaths(name);
  await rm(paths.stateDir, { recursive: true, force: true });
  await rm(paths.dataDir, { recursive: true, force: true });
}
