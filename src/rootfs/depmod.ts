// The kernel modules' indexes (modules.dep.bin, modules.alias.bin, …), as kmod's postinst trigger
// would write them: without them modprobe finds nothing, and a booted image could not load vfat
// for its ESP, overlay for containers or anything else the kernel asks for on demand. The build
// host's depmod writes them into the tree (-b); its output depends only on the modules.
import { readdir } from 'node:fs/promises';
import { runTool } from '../host-tool.js';
import type { Tree } from './tree.js';

/** Runs depmod for every kernel in usr/lib/modules; returns the kernel versions done. */
export async function updateModuleIndexes(tree: Tree): Promise<string[]> {
  const dir = tree.resolve('usr/lib/modules');
  if (dir === null) return [];
  const versions = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  for (const version of versions) await runTool('depmod', ['-b', tree.root, version]);
  return versions;
}
