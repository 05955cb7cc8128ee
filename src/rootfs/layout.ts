// The last steps of the root tree's layout: the default /etc becomes /usr/share/factory/etc (the
// writable root is filled from it on first boot, so /usr alone carries the OS), mount points
// exist, and every time stamp is SOURCE_DATE_EPOCH.
import { lstatSync, lutimesSync, readdirSync, renameSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import type { Tree } from './tree.js';

const FACTORY_ETC = 'usr/share/factory/etc';
const ROOT = { uid: 0, gid: 0 };

// Mount points and their modes; /etc stays as an empty directory for the writable root.
const MOUNT_POINTS: [string, number][] = [
  ['dev', 0o755],
  ['etc', 0o755],
  ['proc', 0o555],
  ['run', 0o755],
  ['sys', 0o555],
  ['tmp', 0o1777],
  ['var', 0o755],
];

/**
 * Moves the entries of `from` into `to`. Packages (systemd) already ship some factory files; the
 * configured /etc wins over them, because it is what the image would have had in /etc.
 */
function mergeInto(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    const source = join(from, name);
    const target = join(to, name);
    const existing = lstatSync(target, { throwIfNoEntry: false });
    if (existing?.isDirectory() && lstatSync(source).isDirectory()) {
      mergeInto(source, target);
      rmdirSync(source);
      continue;
    }
    if (existing !== undefined) rmSync(target, { recursive: true });
    renameSync(source, target);
  }
}

export function moveEtcToFactory(tree: Tree): void {
  const etc = tree.lstat('etc');
  if (etc === undefined) return;
  if (!etc.isDirectory())
    throw new CairnError('/etc in the image is not a directory (a package replaced it)', 'find the package that ships /etc as a link or file');
  const { path: factory, existing } = tree.locate(FACTORY_ETC);
  if (existing === undefined) {
    renameSync(tree.hostPath('etc'), factory);
  } else {
    if (!existing.isDirectory()) throw new CairnError(`/${FACTORY_ETC} in the image is not a directory`);
    mergeInto(tree.hostPath('etc'), factory);
    rmdirSync(tree.hostPath('etc'));
  }
  tree.invalidate();
}

export function makeMountPoints(tree: Tree): void {
  for (const [rel, mode] of MOUNT_POINTS) tree.mkdir(rel, mode, ROOT);
}

/** Sets access and modification times of everything under `root` (links themselves, not targets). */
export function setTimes(root: string, sourceDateEpoch: number): void {
  const visit = (path: string) => {
    if (lstatSync(path).isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
    lutimesSync(path, sourceDateEpoch, sourceDateEpoch);
  };
  visit(root);
}
