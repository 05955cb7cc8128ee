// `cairn run` option values as users write them (512m, 1.5, SRC:DST:ro, 1000:1000), turned
// into spec fields with one clear error each.
import { resolve } from 'node:path';
import { parseOptionSize } from '../document/units.js';
import { CairnError } from '../errors.js';
import { isCleanAbsolute, MIN_MEMORY, type BindMount } from './spec.js';

/** "512m", "1g", "1048576": bytes (binary units, as docker and podman read them). */
export function parseMemory(text: string): number {
  const bytes = parseOptionSize(text);
  if (bytes === null || bytes < MIN_MEMORY) {
    throw new CairnError(`--memory ${text}: expected a size of at least 1m, like 256m or 2g`);
  }
  return bytes;
}

export function parseCpus(text: string): number {
  const n = Number(text);
  if (!/^\d*\.?\d+$/.test(text.trim()) || !(n >= 0.01 && n <= 1024)) {
    throw new CairnError(`--cpus ${text}: expected a number of CPUs between 0.01 and 1024, like 0.5 or 2`);
  }
  return n;
}

export function parsePids(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > 1 << 22) throw new CairnError(`--pids ${text}: expected a whole number of processes, at least 1`);
  return n;
}

/** -v SRC:DST[:ro|rw]; SRC relative to the working directory, DST absolute in the container. */
export function parseVolume(text: string, cwd = process.cwd()): BindMount {
  const parts = text.split(':');
  const mode = parts.length === 3 ? parts[2] : 'rw';
  if (parts.length < 2 || parts.length > 3 || !parts[0] || (mode !== 'ro' && mode !== 'rw')) {
    throw new CairnError(`-v ${text}: expected SRC:DST or SRC:DST:ro (host path, container path)`);
  }
  const source = resolve(cwd, parts[0]);
  const target = parts[1]!.replace(/\/+$/, '') || '/';
  if (!isCleanAbsolute(target) || target === '/') {
    throw new CairnError(`-v ${text}: the container path must be absolute, not /, and without '.' or '..'`);
  }
  return { source, target, readOnly: mode === 'ro' };
}

/** --user root|nobody|UID[:GID] (names other than these two would need the container's passwd, which cairn writes). */
export function parseUser(text: string): { uid: number; gid: number } {
  if (text === 'root') return { uid: 0, gid: 0 };
  if (text === 'nobody') return { uid: 65534, gid: 65534 };
  const m = /^(\d+)(?::(\d+))?$/.exec(text);
  const uid = m ? Number(m[1]) : NaN;
  const gid = m?.[2] !== undefined ? Number(m[2]) : uid;
  if (!m || uid > 2 ** 32 - 2 || gid > 2 ** 32 - 2) throw new CairnError(`--user ${text}: expected root, nobody, UID or UID:GID`);
  return { uid, gid };
}

/** -e NAME=VALUE, or -e NAME to pass the caller's value through. */
export function parseEnv(text: string, from: NodeJS.ProcessEnv = process.env): string | null {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || text.includes('\0')) throw new CairnError(`-e ${text}: expected NAME=VALUE or NAME`);
  if (eq >= 0) return text;
  const value = from[name];
  return value === undefined ? null : `${name}=${value}`;
}
