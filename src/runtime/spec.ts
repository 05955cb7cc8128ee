// The container spec: everything native/spawn needs to start one container, checked here and
// encoded for the helper, which checks it again (native/spawn-spec.c decodes the same format).
import { CairnError } from '../errors.js';
import { FORMATS } from '../document/formats.js';

/** The root a container gets: the shared /usr (optionally under app layers), or a whole unpacked root (OCI images). */
export type ContainerRoot = { usr: string; layers: string[] /* directories overlaid over usr, top first */ } | { rootfs: string };

export type NetMode = 'none' | 'host' | 'private';
export const NET_MODES: readonly NetMode[] = ['none', 'host', 'private'];

export interface BindMount {
  source: string; // host path
  target: string; // container path
  readOnly: boolean;
}

export interface IdMap {
  inside: number;
  outside: number;
  count: number;
}

export interface Limits {
  memoryBytes?: number;
  cpus?: number; // fractional CPUs, as a CFS quota per 100 ms period
  pids?: number;
}

export interface ContainerSpec {
  name: string;
  hostname: string;
  /** An empty host directory; the helper mounts the container's root on it inside the container's own mount namespace. */
  rootDir: string;
  root: ContainerRoot;
  args: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number; groups: number[] };
  net: NetMode;
  binds: BindMount[];
  tmpfs: { path: string; mode: number }[];
  files: { path: string; mode: number; content: string }[];
  symlinks: { path: string; target: string }[];
  limits: Limits;
  userns?: { uidMap: IdMap[]; gidMap: IdMap[] };
  tty: boolean;
}

// The helper's fixed capacities (native/spawn.h).
const MAX_LAYERS = 32;
const MAX_MOUNTS = 64;
const MAX_GROUPS = 32;
const MAX_IDMAPS = 8;
const MAX_ENCODED = 4 << 20;
export const MIN_MEMORY = 1 << 20;
const CPU_PERIOD_US = 100_000;
const MAX_ID = 2 ** 32 - 2;

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/;

/** Container and host names: what a cgroup directory, a state directory and a host name all accept. */
export function checkName(name: string, what = 'container name'): void {
  if (!NAME.test(name)) {
    throw new CairnError(`invalid ${what} '${name}'`, 'use 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter, digit or _');
  }
}

/** An absolute path with no empty, '.' or '..' components: what the helper accepts for every path. */
export function isCleanAbsolute(path: string): boolean {
  if (!path.startsWith('/') || path.includes('\0') || path.length >= 4096) return false;
  if (path === '/') return true;
  return path
    .slice(1)
    .split('/')
    .every((c) => c !== '' && c !== '.' && c !== '..');
}

function bad(field: string, why: string): never {
  throw new CairnError(`container spec: ${field} ${why}`);
}

function checkPath(field: string, path: string): void {
  if (!isCleanAbsolute(path)) bad(field, `'${path}' is not a clean absolute path (no '.', '..' or empty components)`);
}

function checkId(field: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_ID) bad(field, `${n} is not a user or group id`);
}

function checkMode(field: string, mode: number): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) bad(field, `mode ${mode} is not a permission mode`);
}

function checkCount(field: string, n: number, max: number): void {
  if (n > max) bad(field, `has ${n} entries; the helper takes at most ${max}`);
}

/** Throws a CairnError naming the first field the helper would refuse. */
export function checkSpec(spec: ContainerSpec): void {
  checkName(spec.name);
  checkName(spec.hostname, 'host name');
  checkPath('rootDir', spec.rootDir);
  if ('rootfs' in spec.root) checkPath('root.rootfs', spec.root.rootfs);
  else {
    checkPath('root.usr', spec.root.usr);
    checkCount('root.layers', spec.root.layers.length, MAX_LAYERS);
    for (const layer of spec.root.layers) {
      checkPath('root.layers', layer);
      if (/[:,\\]/.test(layer)) bad('root.layers', `'${layer}' contains ':', ',' or '\\', which overlayfs cannot take`);
    }
  }
  if (spec.args.length === 0) bad('args', 'is empty: nothing to run');
  for (const a of spec.args) if (a.includes('\0')) bad('args', 'contain a NUL byte');
  for (const e of spec.env) if (!/^[^=\0][^\0]*=[^\0]*$/.test(e)) bad('env', `entry '${e}' is not NAME=VALUE`);
  checkPath('cwd', spec.cwd);
  checkId('user.uid', spec.user.uid);
  checkId('user.gid', spec.user.gid);
  checkCount('user.groups', spec.user.groups.length, MAX_GROUPS);
  for (const g of spec.user.groups) checkId('user.groups', g);
  if (!NET_MODES.includes(spec.net)) bad('net', `'${spec.net}' is not one of ${NET_MODES.join(', ')}`);
  checkCount('binds', spec.binds.length, MAX_MOUNTS);
  for (const b of spec.binds) {
    checkPath('binds.source', b.source);
    checkPath('binds.target', b.target);
  }
  checkCount('tmpfs', spec.tmpfs.length, MAX_MOUNTS);
  for (const t of spec.tmpfs) {
    checkPath('tmpfs.path', t.path);
    checkMode('tmpfs.mode', t.mode);
  }
  checkCount('files', spec.files.length, MAX_MOUNTS);
  for (const f of spec.files) {
    checkPath('files.path', f.path);
    if (f.path === '/') bad('files.path', "'/' is not a file");
    checkMode('files.mode', f.mode);
    if (f.content.includes('\0')) bad('files.content', `of ${f.path} contains a NUL byte`);
  }
  checkCount('symlinks', spec.symlinks.length, MAX_MOUNTS);
  for (const s of spec.symlinks) {
    checkPath('symlinks.path', s.path);
    if (s.path === '/') bad('symlinks.path', "'/' cannot be a symlink");
    if (s.target === '' || s.target.includes('\0')) bad('symlinks.target', `of ${s.path} is empty or contains NUL`);
  }
  const { memoryBytes, cpus, pids } = spec.limits;
  if (memoryBytes !== undefined && (!Number.isSafeInteger(memoryBytes) || memoryBytes < MIN_MEMORY))
    bad('limits.memoryBytes', `${memoryBytes} is below 1 MiB or not a whole number`);
  if (cpus !== undefined && (!Number.isFinite(cpus) || cpus < 0.01 || cpus > 1024)) bad('limits.cpus', `${cpus} is not between 0.01 and 1024`);
  if (pids !== undefined && (!Number.isInteger(pids) || pids < 1 || pids > 1 << 22)) bad('limits.pids', `${pids} is not between 1 and ${1 << 22}`);
  if (spec.userns) {
    for (const [field, maps] of [
      ['userns.uidMap', spec.userns.uidMap],
      ['userns.gidMap', spec.userns.gidMap],
    ] as const) {
      if (maps.length === 0) bad(field, 'is empty');
      checkCount(field, maps.length, MAX_IDMAPS);
      for (const m of maps) {
        checkId(field, m.inside);
        checkId(field, m.outside);
        if (!Number.isInteger(m.count) || m.count < 1) bad(field, `count ${m.count} is not positive`);
      }
    }
  }
}

/** The helper's input: NUL-terminated tokens, a keyword then its arguments (format in docs/runtime.md). */
export function encodeSpec(spec: ContainerSpec): Buffer {
  checkSpec(spec);
  const t: string[] = [FORMATS.spawnSpec, 'name', spec.name, 'hostname', spec.hostname, 'rootdir', spec.rootDir];
  if ('rootfs' in spec.root) t.push('rootfs', spec.root.rootfs);
  else {
    t.push('usr', spec.root.usr);
    for (const layer of spec.root.layers) t.push('layer', layer);
  }
  for (const a of spec.args) t.push('arg', a);
  for (const e of spec.env) t.push('env', e);
  t.push('cwd', spec.cwd, 'user', String(spec.user.uid), String(spec.user.gid));
  for (const g of spec.user.groups) t.push('group', String(g));
  t.push('net', spec.net);
  if (spec.userns) {
    t.push('userns');
    for (const m of spec.userns.uidMap) t.push('uidmap', String(m.inside), String(m.outside), String(m.count));
    for (const m of spec.userns.gidMap) t.push('gidmap', String(m.inside), String(m.outside), String(m.count));
  }
  for (const m of spec.tmpfs) t.push('tmpfs', m.path, m.mode.toString(8));
  for (const b of spec.binds) t.push('bind', b.source, b.target, b.readOnly ? 'ro' : 'rw');
  for (const f of spec.files) t.push('file', f.path, f.mode.toString(8), f.content);
  for (const s of spec.symlinks) t.push('symlink', s.target, s.path);
  const { memoryBytes, cpus, pids } = spec.limits;
  if (memoryBytes !== undefined) t.push('memory', String(memoryBytes));
  if (cpus !== undefined) t.push('cpu', String(Math.round(cpus * CPU_PERIOD_US)), String(CPU_PERIOD_US));
  if (pids !== undefined) t.push('pids', String(pids));
  if (spec.tty) t.push('tty');
  const encoded = Buffer.from(t.map((x) => `${x}\0`).join(''), 'utf8');
  if (encoded.length > MAX_ENCODED) bad('', `encodes to ${encoded.length} bytes; the helper reads at most ${MAX_ENCODED}`);
  return encoded;
}
