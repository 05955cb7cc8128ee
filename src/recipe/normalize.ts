import { dirname, resolve } from 'node:path';
import { shipped, DEFAULT_KERNEL_CONFIG, DEFAULT_KEYRING } from '../install.js';
import { parseSize } from '../document/units.js';
import type { ContainerSpec, FileSpec, GroupSpec, Recipe, UserSpec } from './types.js';

/** The recipe as written, after the schema accepted it and filled in its defaults. */
interface Written {
  name: string;
  version: string;
  description: string;
  base: {
    suite: string;
    'extra-suites': string[];
    mirror: string;
    components: string[];
    architecture: string;
    keyring?: string;
    essential: boolean;
    priority: Recipe['base']['priority'];
  };
  packages: string[];
  kernel: { package: string; config?: string };
  init: string;
  hostname?: string;
  groups: GroupSpec[];
  users: (Omit<UserSpec, 'group' | 'home' | 'sshAuthorizedKeys'> & { group?: string; home?: string; 'ssh-authorized-keys': string[] })[];
  files: { path: string; content?: string; source?: string; mode: string | number; owner: string; group: string }[];
  units: Recipe['units'];
  alternatives: Recipe['alternatives'];
  links: Recipe['links'];
  disk: { esp: Size; usr: Size; 'usr-verity': Size; root: Size; 'usr-compression': string | null };
  update: { repository: string; channel: string; keys: string[] } | null;
  containers: (Omit<ContainerSpec, 'memory'> & { memory: Size | null })[];
}

type Size = number | string;

/** Maps data that passed the schema and checks onto the Recipe the build reads. */
export function toRecipe(data: unknown, file: string): Recipe {
  const w = data as Written;
  const recipeFile = resolve(file);
  const fromRecipe = (p: string): string => resolve(dirname(recipeFile), p);
  const users = w.users.map(({ 'ssh-authorized-keys': sshAuthorizedKeys, ...u }) => ({
    ...u,
    group: u.group ?? u.name,
    home: u.home ?? `/home/${u.name}`,
    sshAuthorizedKeys,
  }));
  return {
    file: recipeFile,
    name: w.name,
    version: w.version,
    description: w.description,
    base: {
      suite: w.base.suite,
      extraSuites: w.base['extra-suites'],
      components: w.base.components,
      architecture: w.base.architecture,
      essential: w.base.essential,
      priority: w.base.priority,
      // Index and pool URLs are joined onto the mirror with a slash.
      mirror: w.base.mirror.replace(/\/+$/, ''),
      keyring: w.base.keyring === undefined ? shipped(DEFAULT_KEYRING) : fromRecipe(w.base.keyring),
    },
    packages: w.packages,
    kernel: {
      package: w.kernel.package,
      config: w.kernel.config === undefined ? shipped(DEFAULT_KERNEL_CONFIG) : fromRecipe(w.kernel.config),
    },
    init: w.init,
    hostname: w.hostname ?? w.name,
    users,
    groups: [...w.groups, ...ownGroups(w.groups, users)],
    files: w.files.map((f): FileSpec => ({
      path: f.path,
      content: f.content ?? null,
      source: f.source === undefined ? null : fromRecipe(f.source),
      mode: typeof f.mode === 'number' ? f.mode : parseInt(f.mode, 8),
      owner: f.owner,
      group: f.group,
    })),
    units: w.units,
    alternatives: w.alternatives,
    links: w.links,
    disk: {
      esp: bytes(w.disk.esp),
      usr: bytes(w.disk.usr),
      usrVerity: bytes(w.disk['usr-verity']),
      root: bytes(w.disk.root),
      usrCompression: w.disk['usr-compression'] === 'none' ? null : w.disk['usr-compression'],
    },
    update: w.update && { ...w.update, keys: w.update.keys.map(fromRecipe) },
    containers: w.containers.map((c) => ({ ...c, memory: c.memory === null ? null : bytes(c.memory) })),
  };
}

/** Users whose primary group is their own name and not declared get it with gid = uid. */
function ownGroups(declared: GroupSpec[], users: UserSpec[]): GroupSpec[] {
  const names = new Set(declared.map((g) => g.name));
  return users.filter((u) => u.group === u.name && !names.has(u.name)).map((u) => ({ name: u.name, gid: u.uid }));
}

function bytes(size: Size): number {
  const value = parseSize(size);
  if (value === null) throw new Error(`size ${String(size)} passed validation but cannot be parsed`);
  return value;
}
