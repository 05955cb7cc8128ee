// The staging tree: every write into the image goes through here, so no path, symlink or hard
// link in a package or recipe can reach the build host. Paths are image paths ("/usr/bin/sh" or
// "usr/bin/sh"); the /usr merge is applied to them; symlinks already in the tree are followed
// only while they stay inside it, and never through an absolute target while writing, because
// that target means the build host's file system to every tool that is not chrooted.
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  chmodSync,
  chownSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { entryPath } from '../debian/deb-reader.js';

/** Top-level directories that live under /usr in a merged tree, as links `NAME -> usr/NAME`. */
export const MERGED_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'] as const;

const PATH_MAX = 4096;
const NAME_MAX = 255;
const MAX_LINK_HOPS = 40;

/** A path that cannot be used in the tree; the caller adds which package or recipe entry. */
export class TreePathError extends Error {}

export interface Owner {
  uid: number;
  gid: number;
}

const ROOT_OWNER: Owner = { uid: 0, gid: 0 };

/** Normalises an image path and moves it under /usr when it starts with a merged directory. */
export function imagePath(path: string): string {
  let rel: string;
  try {
    rel = entryPath(path.replace(/^\/+/, ''));
  } catch (err) {
    throw new TreePathError((err as Error).message);
  }
  if (Buffer.byteLength(rel) + 1 >= PATH_MAX) throw new TreePathError(`the path is longer than ${PATH_MAX} bytes`);
  for (const part of rel.split('/')) {
    if (Buffer.byteLength(part) > NAME_MAX) throw new TreePathError(`a path component is longer than ${NAME_MAX} bytes`);
  }
  const top = rel.split('/', 1)[0];
  return (MERGED_DIRS as readonly string[]).includes(top) ? `usr/${rel}` : rel;
}

/**
 * How a walk treats what it meets: `write` creates missing directories and refuses absolute
 * symlinks; `check` refuses them too but creates nothing; `read` resolves absolute targets
 * against the tree root, as the image will at run time.
 */
type Follow = 'write' | 'check' | 'read';

export class Tree {
  // Logical parent directory → physical directory, for directories known to exist. Cleared
  // whenever a symlink is replaced or anything removed, the only changes that can stale it.
  private dirs = new Map<string, string>();

  /**
   * `keepOwners: false` leaves every entry owned by the caller instead of its owner in the
   * archive, as an unprivileged unpack must (owners then come from a user namespace's mapping).
   */
  constructor(
    readonly root: string,
    private readonly keepOwners = true,
  ) {}

  /** Absolute host path of an image path, without resolving anything (for reading, hashing). */
  hostPath(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /**
   * Physical components of `parts` inside the tree, or null when a directory on the way is
   * missing and `mode` does not create it. The last component is followed only when `followLast`.
   */
  private walk(parts: string[], mode: Follow, followLast: boolean): string[] | null {
    const todo = [...parts];
    let done: string[] = [];
    let hops = 0;
    while (todo.length > 0) {
      const part = todo.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (done.length === 0) throw new TreePathError('a symlink on the way leads above the root of the tree');
        done.pop();
        continue;
      }
      const last = todo.length === 0;
      const here = join(this.root, ...done, part);
      const st = lstatSync(here, { throwIfNoEntry: false });
      if (st === undefined) {
        if (last) {
          done.push(part);
          break;
        }
        if (mode !== 'write') return null;
        this.makeDir(here, 0o755, ROOT_OWNER);
        done.push(part);
        continue;
      }
      if (st.isSymbolicLink() && (!last || followLast)) {
        if (++hops > MAX_LINK_HOPS) throw new TreePathError(`too many levels of symlinks at /${[...done, part].join('/')}`);
        const target = readlinkSync(here);
        if (target.startsWith('/')) {
          if (mode !== 'read') {
            throw new TreePathError(
              `it goes through the symlink /${[...done, part].join('/')} -> ${target}, an absolute link, which is never followed while writing`,
            );
          }
          done = [];
        }
        todo.unshift(...target.split('/'));
        continue;
      }
      if (!last && !st.isDirectory()) throw new TreePathError(`/${[...done, part].join('/')} is not a directory`);
      done.push(part);
    }
    return done;
  }

  /** Physical host path of the parent directory of `rel`, creating missing directories. */
  private parentFor(rel: string): string {
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : rel.slice(0, slash);
    let physical = this.dirs.get(parent);
    if (physical === undefined) {
      // The trailing "." makes the parent a middle component: followed, and created when missing.
      physical = parent === '' ? this.root : join(this.root, ...this.walk([...parent.split('/'), '.'], 'write', true)!);
      this.dirs.set(parent, physical);
    }
    return physical;
  }

  /** Throws a TreePathError when a write to `rel` would be refused (a symlink on the way leaves the tree or is absolute); creates nothing. */
  checkWritable(rel: string): void {
    this.walk(rel.split('/'), 'check', false);
  }

  /** Where `rel` is written, and what is there now (not followed). */
  locate(rel: string): { path: string; existing: Stats | undefined } {
    const path = join(this.parentFor(rel), rel.slice(rel.lastIndexOf('/') + 1));
    return { path, existing: lstatSync(path, { throwIfNoEntry: false }) };
  }

  /** Host path `rel` resolves to when read inside the image (all symlinks followed), or null. */
  resolve(rel: string): string | null {
    const parts = this.walk(rel.split('/'), 'read', true);
    if (parts === null) return null;
    const path = join(this.root, ...parts);
    return lstatSync(path, { throwIfNoEntry: false }) === undefined ? null : path;
  }

  /** lstat of `rel` with its parents resolved for reading, or undefined. */
  lstat(rel: string): Stats | undefined {
    const path = this.find(rel);
    return path === null ? undefined : lstatSync(path, { throwIfNoEntry: false });
  }

  /** Host path of `rel` with its parents resolved for reading (the last component not followed), or null. */
  find(rel: string): string | null {
    const parts = this.walk(rel.split('/'), 'read', false);
    return parts === null ? null : join(this.root, ...parts);
  }

  private own(path: string, owner: Owner, link = false): void {
    if (!this.keepOwners) return;
    if (link) lchownSync(path, owner.uid, owner.gid);
    else chownSync(path, owner.uid, owner.gid);
  }

  /** Removes a non-directory at `path` (from locate) before something else takes its place. */
  private clear(path: string, existing: Stats | undefined): void {
    if (existing === undefined) return;
    if (existing.isDirectory()) throw new TreePathError('a directory is already there');
    unlinkSync(path);
    if (existing.isSymbolicLink()) this.dirs.clear();
  }

  /** Creates or updates a directory. An existing symlink to a directory is kept, as dpkg does. */
  mkdir(rel: string, mode: number, owner: Owner): void {
    if (rel === '') return;
    const { path, existing } = this.locate(rel);
    if (existing === undefined) {
      this.makeDir(path, mode, owner);
    } else if (existing.isDirectory()) {
      this.own(path, owner);
      chmodSync(path, mode);
    } else if (!(existing.isSymbolicLink() && this.resolvesToDir(rel))) {
      throw new TreePathError('a file is already there');
    }
  }

  private resolvesToDir(rel: string): boolean {
    const target = this.resolve(rel);
    return target !== null && lstatSync(target).isDirectory();
  }

  /**
   * Writes a regular file from `chunks`, replacing a non-directory. The file is created with
   * O_EXCL|O_NOFOLLOW in a parent this tree resolved, so it cannot be redirected elsewhere.
   */
  async writeFile(rel: string, chunks: AsyncIterable<Buffer> | Iterable<Buffer>, mode: number, owner: Owner): Promise<void> {
    const { path, existing } = this.locate(rel);
    this.clear(path, existing);
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of chunks) {
        for (let at = 0; at < chunk.length;) at += writeSync(fd, chunk, at);
      }
      // chown clears setuid and setgid, so the mode comes after it.
      if (this.keepOwners) fchownSync(fd, owner.uid, owner.gid);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  symlink(rel: string, target: string, owner: Owner): void {
    const { path, existing } = this.locate(rel);
    this.clear(path, existing);
    symlinkSync(target, path);
    this.own(path, owner, true);
  }

  /** A hard link at `rel` to the regular file at image path `targetRel`. */
  hardlink(rel: string, targetRel: string): void {
    const parts = this.walk(targetRel.split('/'), 'check', false);
    const target = parts === null ? null : join(this.root, ...parts);
    if (target === null || !lstatSync(target, { throwIfNoEntry: false })?.isFile()) {
      throw new TreePathError(`the hard link target /${targetRel} is not a regular file already in the tree`);
    }
    const { path, existing } = this.locate(rel);
    this.clear(path, existing);
    linkSync(target, path);
  }

  /** Gives the regular file or directory at `rel` an owner, then its mode (chown clears setuid). */
  chown(rel: string, owner: Owner, mode: number): void {
    const { path, existing } = this.locate(rel);
    if (existing === undefined || !(existing.isFile() || existing.isDirectory())) throw new TreePathError(`/${rel} is not a file or directory`);
    this.own(path, owner);
    chmodSync(path, mode);
  }

  /** Forgets resolved directories, after something moved whole directories behind the tree's back. */
  invalidate(): void {
    this.dirs.clear();
  }

  private makeDir(path: string, mode: number, owner: Owner): void {
    mkdirSync(path);
    this.own(path, owner);
    // mkdir applies the umask and drops setgid/sticky bits; chmod sets them exactly.
    chmodSync(path, mode);
  }

  /** Removes a non-directory if present. */
  remove(rel: string): void {
    const { path, existing } = this.locate(rel);
    this.clear(path, existing);
    this.dirs.clear();
  }
}
