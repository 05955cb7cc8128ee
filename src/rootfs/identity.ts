// What tells the image who it is: os-release (the recipe's name and version, as IMAGE_ID and
// IMAGE_VERSION for systemd and update tooling), the hostname, and an empty machine-id, which
// systemd reads as "first boot: generate one" so no two hosts share an id baked into the image.
import { IMAGE_PATHS } from '../install.js';
import type { Recipe } from '../recipe/types.js';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };

/** Where an image carries the lock it was built from, relative to /usr: what layers check their base by. */
export const BASE_LOCK_PATH = IMAGE_PATHS.baseLock.slice('usr/'.length);

// os-release(5) values are shell-quoted strings.
function quote(value: string): string {
  return `"${value.replace(/[\\"$`]/g, (c) => `\\${c}`)}"`;
}

export function osRelease(recipe: Pick<Recipe, 'name' | 'version' | 'base' | 'hostname'>): string {
  const fields: [string, string][] = [
    ['PRETTY_NAME', `cairn ${recipe.name} ${recipe.version}`],
    ['NAME', `cairn ${recipe.name}`],
    ['ID', 'cairn'],
    ['ID_LIKE', 'debian'],
    ['VERSION', recipe.version],
    ['VERSION_ID', recipe.version],
    ['VERSION_CODENAME', recipe.base.suite],
    ['IMAGE_ID', recipe.name],
    ['IMAGE_VERSION', recipe.version],
    // systemd's fallback: the name a host has until provisioning or DHCP gives it one.
    ['DEFAULT_HOSTNAME', recipe.hostname],
  ];
  return fields.map(([k, v]) => `${k}=${quote(v)}\n`).join('');
}

/** `lockfile`: the canonical text of the lock the image was built from, when there is one. */
export async function writeIdentity(tree: Tree, recipe: Pick<Recipe, 'name' | 'version' | 'base' | 'hostname'>, lockfile?: string): Promise<void> {
  await tree.writeFile('usr/lib/os-release', [Buffer.from(osRelease(recipe))], 0o644, ROOT);
  if (lockfile !== undefined) await tree.writeFile(`usr/${BASE_LOCK_PATH}`, [Buffer.from(lockfile)], 0o644, ROOT);
  tree.symlink('etc/os-release', '../usr/lib/os-release', ROOT);
  // With systemd the recipe's name is only the fallback above: a static /etc/hostname would keep
  // DHCP from naming the host. Without it (a shell as init) /etc/hostname is all there is.
  if (tree.resolve('usr/lib/systemd/systemd-hostnamed') === null) await tree.writeFile('etc/hostname', [Buffer.from(`${recipe.hostname}\n`)], 0o644, ROOT);
  await tree.writeFile('etc/machine-id', [], 0o444, ROOT);
}
