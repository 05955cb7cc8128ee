// The kernel unpacks an initramfs from a "newc" (SVR4, no CRC) cpio archive. cairn writes it itself
// so the bytes depend only on the entries: no host owners, times, inode numbers or readdir order.
import { CairnError } from '../errors.js';

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

export interface CpioOptions {
  /** Every entry's mtime: the build's SOURCE_DATE_EPOCH. */
  mtime: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';
const HEADER_SIZE = 110;
const MAX_FIELD = 0xffffffff;

/** A path inside the archive: relative, no `.`/`..`/empty components, so unpacking cannot escape its root. */
function checkPath(path: string): string {
  const parts = path.split('/');
  if (path === '' || parts.some((p) => p === '' || p === '.' || p === '..') || path.includes('\0')) {
    throw new CairnError(
      `cpio entry path ${JSON.stringify(path)} is not a clean relative path`,
      'use paths like "lib/modules/erofs.ko" without a leading "/", "." or ".."',
    );
  }
  if (path === TRAILER) throw new CairnError(`cpio entry path ${JSON.stringify(path)} is reserved for the end-of-archive marker`);
  return path;
}

function permissions(mode: number | undefined, fallback: number, path: string): number {
  const m = mode ?? fallback;
  if (!Number.isInteger(m) || m < 0 || m > 0o7777) throw new CairnError(`cpio entry ${path}: mode ${m} is not a permission mode (0 to 0o7777)`);
  return m;
}

function hex8(n: number, what: string): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_FIELD) throw new CairnError(`cpio ${what} ${n} does not fit the newc header (0 to 2^32-1)`);
  return n.toString(16).toUpperCase().padStart(8, '0');
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

interface CpioRecord {
  name: string;
  mode: number;
  nlink: number;
  data: Uint8Array;
  rdevMajor: number;
  rdevMinor: number;
}

function record(r: CpioRecord, ino: number, mtime: number): Buffer[] {
  const name = Buffer.from(`${r.name}\0`, 'utf8');
  const header = Buffer.from(
    '070701' +
      [ino, r.mode, 0, 0, r.nlink, mtime, r.data.length, 0, 0, r.rdevMajor, r.rdevMinor, name.length, 0]
        .map((v, i) =>
          hex8(v, ['inode', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'file size', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'name size', 'check'][i]!),
        )
        .join(''),
    'ascii',
  );
  return [header, name, Buffer.alloc(pad4(HEADER_SIZE + name.length)), Buffer.from(r.data), Buffer.alloc(pad4(r.data.length))];
}

function toRecord(e: CpioEntry): CpioRecord {
  const base = { name: e.path, nlink: 1, data: new Uint8Array(0), rdevMajor: 0, rdevMinor: 0 };
  switch (e.type) {
    case 'dir':
      return { ...base, mode: S_IFDIR | permissions(e.mode, 0o755, e.path), nlink: 2 };
    case 'file':
      return { ...base, mode: S_IFREG | permissions(e.mode, 0o644, e.path), data: e.data };
    case 'symlink':
      if (e.target === '' || e.target.includes('\0')) throw new CairnError(`cpio symlink ${e.path} has an empty or NUL-containing target`);
      return { ...base, mode: S_IFLNK | 0o777, data: Buffer.from(e.target, 'utf8') };
    case 'chardev':
      hex8(e.major, `device major of ${e.path}`);
      hex8(e.minor, `device minor of ${e.path}`);
      return { ...base, mode: S_IFCHR | permissions(e.mode, 0o600, e.path), rdevMajor: e.major, rdevMinor: e.minor };
  }
}

/**
 * The newc archive of `entries`, sorted by path (so a directory always precedes its contents), with
 * missing parent directories added (mode 0755), owner root, mtime `options.mtime` and inode numbers
 * counted in that order. The same entries always give the same bytes.
 */
export function cpioArchive(entries: readonly CpioEntry[], options: CpioOptions): Buffer {
  hex8(options.mtime, 'mtime');
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    checkPath(e.path);
    if (byPath.has(e.path)) throw new CairnError(`cpio entry ${e.path} is given twice`);
    byPath.set(e.path, e);
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = byPath.get(parent);
      if (existing === undefined) byPath.set(parent, { type: 'dir', path: parent });
      else if (existing.type !== 'dir') throw new CairnError(`cpio entry ${path} lies under ${parent}, which is a ${existing.type}, not a directory`);
    }
  }
  // Code-unit order, not locale order, so the archive does not depend on the build host's locale.
  const sorted = [...byPath.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: Buffer[] = [];
  sorted.forEach((path, i) => parts.push(...record(toRecord(byPath.get(path)!), i + 1, options.mtime)));
  parts.push(...record({ name: TRAILER, mode: 0, nlink: 1, data: new Uint8Array(0), rdevMajor: 0, rdevMinor: 0 }, 0, 0));
  return Buffer.concat(parts);
}
