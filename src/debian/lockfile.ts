// cairn.lock: the exact packages a recipe resolved to, and the signed InRelease they came
// from. A build with a matching lock needs no index at all: every .deb is fetched by its
// archive path and checked against the SHA-256 recorded here.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import { checkJsonDocument } from '../document/json-document.js';
import { compileSchema } from '../document/schema.js';
import { writeFileAtomic } from '../fs-atomic.js';
import type { ArchiveOrigin, LockedPackage } from './types.js';
import schema from './lock.schema.json' with { type: 'json' };

export interface LockOrigin extends ArchiveOrigin {
  components: string[];
  architecture: string;
}

export interface Lockfile {
  lockfileVersion: 1;
  recipe: string;
  /** SHA-256 of what in the recipe decides the resolution: when it changes, the lock is stale. */
  inputs: string;
  origin: LockOrigin;
  /** The InReleases of base.extra-suites (same mirror), when the recipe takes packages from them. */
  extraOrigins?: Omit<ArchiveOrigin, 'mirror'>[];
  packages: LockedPackage[];
}

const validate = compileSchema<Lockfile>(schema);
const HINT = 'delete it and run "cairn lock" again';

/** `recipes/host.yaml` → `recipes/host.lock`. */
export function lockPathFor(recipeFile: string): string {
  return recipeFile.replace(/\.ya?ml$/, '') + '.lock';
}

/** Hash of the recipe fields that change which packages resolve; nothing else invalidates a lock. */
export function resolutionInputs(recipe: Recipe): string {
  const { suite, mirror, components, architecture, essential, priority } = recipe.base;
  const inputs = {
    suite,
    mirror: mirror.replace(/\/+$/, ''),
    components,
    architecture,
    essential,
    priority,
    packages: [...new Set([...recipe.packages, recipe.kernel.package])].sort(),
    // Only when used: locks written before extra suites existed keep their inputs hash.
    ...(recipe.base.extraSuites.length > 0 ? { extraSuites: recipe.base.extraSuites } : {}),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex');
}

export function lockMatches(lock: Lockfile, recipe: Recipe): boolean {
  return lock.inputs === resolutionInputs(recipe);
}

/** Reads and checks a lockfile; null when there is none. A malformed lock is an error, never ignored. */
export async function readLockfile(path: string): Promise<Lockfile | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CairnError(`${path}: not valid JSON (${(err as Error).message})`, HINT);
  }
  const data = checkJsonDocument(parsed, path, validate, 'a cairn lockfile', HINT);
  const seen = new Set<string>();
  for (const p of data.packages) {
    if (seen.has(p.name)) throw new CairnError(`${path}: package ${p.name} is listed twice`, HINT);
    seen.add(p.name);
  }
  return data;
}

export function formatLockfile(lock: Lockfile): string {
  const packages = [...lock.packages].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const ordered: Lockfile = {
    lockfileVersion: 1,
    recipe: lock.recipe,
    inputs: lock.inputs,
    origin: lock.origin,
    ...(lock.extraOrigins ? { extraOrigins: lock.extraOrigins } : {}),
    packages: packages.map((p) => ({ name: p.name, version: p.version, architecture: p.architecture, size: p.size, sha256: p.sha256, filename: p.filename })),
  };
  return JSON.stringify(ordered, null, 2) + '\n';
}

/**
 * The bytes that name a base: the lock in its canonical form. Images carry exactly these as
 * /usr/lib/cairn/cairn.lock, so a layer built from the recipe's lock and the image built from it
 * agree on the hash even when the lock on disk was reformatted by hand.
 */
export function lockfileSha256(lock: Lockfile): string {
  return createHash('sha256').update(formatLockfile(lock)).digest('hex');
}

export async function writeLockfile(path: string, lock: Lockfile): Promise<void> {
  await writeFileAtomic(path, formatLockfile(lock));
}

/** SOURCE_DATE_EPOCH from the environment, else the date of the InRelease the lock came from. */
export function sourceDateEpoch(lock: Lockfile, env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!/^[0-9]+$/.test(fromEnv)) throw new CairnError(`SOURCE_DATE_EPOCH=${fromEnv} is not a number of seconds`, 'unset it or set it to e.g. $(date +%s)');
    return Number(fromEnv);
  }
  return Math.floor(Date.parse(lock.origin.date) / 1000);
}

export interface LockChanges {
  /** Packages new in `after`, or at another version there. */
  changed: { name: string; from: string | null; to: string }[];
  removed: string[];
}

/** What moved between two locks of a recipe (the first may not exist yet). */
export function lockChanges(before: Lockfile | null, after: Lockfile): LockChanges {
  const previous = new Map(before?.packages.map((p) => [p.name, p.version]) ?? []);
  return {
    changed: after.packages.filter((p) => previous.get(p.name) !== p.version).map((p) => ({ name: p.name, from: previous.get(p.name) ?? null, to: p.version })),
    removed: [...previous.keys()].filter((name) => !after.packages.some((p) => p.name === name)),
  };
}
