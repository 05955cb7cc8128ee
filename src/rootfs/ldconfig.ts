// /etc/ld.so.cache, as libc-bin's trigger would write it. The tree's own ldconfig does it
// (Debian builds it static, so it runs on the build host): its output then depends on the
// image's glibc only, not on the build host's, which keeps the cache reproducible.
import { spawnSync } from 'node:child_process';
import { CairnError } from '../errors.js';
import type { Tree } from './tree.js';

// The auxiliary cache records inode numbers and times of the build; the image does not need it.
const AUX_CACHE = 'var/cache/ldconfig/aux-cache';

/** Writes etc/ld.so.cache; false when the tree has no ldconfig (no libc, nothing to cache). */
export function updateLdCache(tree: Tree): boolean {
  const ldconfig = tree.resolve('usr/sbin/ldconfig');
  if (ldconfig === null) return false;
  // -r chroots into the tree, so configuration and libraries are the image's; -X leaves the
  // soname links as the packages shipped them.
  const run = spawnSync(ldconfig, ['-X', '-r', tree.root], { encoding: 'utf8' });
  if (run.error !== undefined || run.status !== 0) {
    throw new CairnError(
      `the image's /usr/sbin/ldconfig failed: ${run.error?.message ?? (run.stderr.trim() || `exit code ${run.status}`)}`,
      "the image must be for the build host's architecture, and its libc-bin intact",
    );
  }
  if (tree.lstat(AUX_CACHE) !== undefined) tree.remove(AUX_CACHE);
  return true;
}
