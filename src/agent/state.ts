// The agent's persisted state: the transaction in progress, what the channels announced, the
// releases that failed here and the last error. Written whole through writeFileAtomic, so a cut
// leaves the old file or the new one; a file that is nevertheless unreadable (a disk error, a
// hand edit) must not keep the agent from starting: it is kept aside and the agent starts clean.
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { syncDirectory, writeFileAtomic } from '../fs-atomic.js';
import { compileSchema } from '../document/schema.js';
import schema from './agent-state.schema.json' with { type: 'json' };
import { FORMATS } from '../document/formats.js';

export const STATE_FILE = 'state.json';
/** Far more than the state ever holds; a larger file is not one the agent wrote. */
const MAX_STATE_BYTES = 1024 * 1024;

export interface Transaction {
  /** The step the update reached; the state machine names its steps. */
  step: string;
  /** The release being installed. */
  version: string;
  startedAt: string;
  updatedAt: string;
  /** What the step recorded for the next one (plain JSON). */
  data: Record<string, unknown>;
}

export interface AgentState {
  format: typeof FORMATS.agentState;
  transaction: Transaction | null;
  seen: Record<string, { version: string; at: string }>;
  bad: { version: string; reason: string; at: string }[];
  lastError: { message: string; step: string | null; at: string } | null;
}

export interface LoadedState {
  state: AgentState;
  /** Set when the file on disk was unusable: why, and where it was moved. */
  recovered?: { reason: string; keptAs: string };
}

export function freshState(): AgentState {
  return { format: FORMATS.agentState, transaction: null, seen: {}, bad: [], lastError: null };
}

/** Loads the state from `dir`; a missing file is a fresh start, a bad one is moved aside. */
export async function loadState(dir: string): Promise<LoadedState> {
  const path = join(dir, STATE_FILE);
  await removeStaleTemps(dir);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: freshState() };
    throw new CairnError(`cannot read the agent state ${path}: ${(err as Error).message}`, 'check the permissions of the state directory');
  }
  const parsed =
    size > MAX_STATE_BYTES
      ? { problem: `it is ${size} bytes, more than the ${MAX_STATE_BYTES} the agent ever writes` }
      : parseState(await readFile(path, 'utf8'));
  if ('state' in parsed) return { state: parsed.state };
  const keptAs = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await rename(path, keptAs);
  await syncDirectory(dir);
  return { state: freshState(), recovered: { reason: parsed.problem, keptAs } };
}

/** Writes the state whole (temp file, fsync, rename); refuses a state that load would reject. */
export async function saveState(dir: string, state: AgentState): Promise<void> {
  if (!validator()(state)) throw new Error(`refusing to save an invalid agent state: ${describeErrors()}`);
  const text = `${JSON.stringify(state, null, 2)}\n`;
  if (Buffer.byteLength(text) > MAX_STATE_BYTES)
    throw new CairnError(`the agent state would be ${Buffer.byteLength(text)} bytes`, 'keep transaction data small: it is for resuming, not for payloads');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, STATE_FILE), text, 0o600);
}

/** Records that `version` failed on this host (once; the first reason stays). */
export function markBad(state: AgentState, version: string, reason: string, now = new Date()): AgentState {
  if (isBad(state, version)) return state;
  return { ...state, bad: [...state.bad, { version, reason, at: now.toISOString() }] };
}

export function isBad(state: AgentState, version: string): boolean {
  return state.bad.some((b) => b.version === version);
}

function parseState(text: string): { state: AgentState } | { problem: string } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { problem: `it is not JSON (${(err as Error).message})` };
  }
  if (!validator()(data)) return { problem: `it does not match the state format: ${describeErrors()}` };
  return { state: data as AgentState };
}

/** Temp files of a write that was cut before its rename (writeAtomic's `.state.json.<hex>.tmp`). */
async function removeStaleTemps(dir: string): Promise<void> {
  const names = await readdir(dir).catch((): string[] => []);
  for (const name of names) {
    if (/^\.state\.json\.[0-9a-f]+\.tmp$/.test(name)) await rm(join(dir, name), { force: true });
  }
}

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  compiled ??= compileSchema(schema);
  return compiled;
}

function describeErrors(): string {
  return (validator().errors ?? [])
    .slice(0, 3)
    .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is not valid'}`)
    .join('; ');
}
