// Keeps a recipe's lockfile in step with the recipe: reuse it when it matches, resolve afresh
// against the signed archive when it does not (or fail under --frozen).
import { openArchive } from '../debian/archive.js';
import type { FetchCache } from '../debian/fetch-cache.js';
import { lockMatches, lockPathFor, readLockfile, resolutionInputs, writeLockfile, type Lockfile } from '../debian/lockfile.js';
import { resolve } from '../debian/resolver.js';
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';

export type LockStatus = 'unchanged' | 'created' | 'refreshed';

export interface LockOptions {
  cache: FetchCache;
  /** Fail rather than write a lock that differs from the one on disk. */
  frozen?: boolean;
  /** Resolve again even when the lock matches (`cairn lock`). */
  refresh?: boolean;
  log?: (line: string) => void;
}

/** Resolves the recipe against the archive it names and returns the lock (not yet written). */
export async function resolveLock(recipe: Recipe, options: LockOptions): Promise<Lockfile> {
  const { base } = recipe;
  options.log?.(`resolving against ${base.mirror} ${base.suite} (${base.components.join(', ')}, ${base.architecture})`);
  const archive = await openArchive({
    mirror: base.mirror,
    suite: base.suite,
    components: base.components,
    architecture: base.architecture,
    keyring: base.keyring,
    cache: options.cache,
  });
  const result = resolve(
    {
      packages: [...new Set([...recipe.packages, recipe.kernel.package])],
      architecture: base.architecture,
      essential: base.essential,
      priority: base.priority,
      suite: base.suite,
    },
    archive.packages,
  );
  for (const note of result.notes) options.log?.(note);
  return {
    lockfileVersion: 1,
    recipe: recipe.name,
    inputs: resolutionInputs(recipe),
    origin: { ...archive.origin, components: base.components, architecture: base.architecture },
    packages: result.packages.map(({ record }) => ({
      name: record.name,
      version: record.version,
      architecture: record.architecture,
      size: record.size,
      sha256: record.sha256,
      filename: record.filename,
    })),
  };
}

export async function ensureLock(recipe: Recipe, options: LockOptions): Promise<{ lock: Lockfile; path: string; status: LockStatus }> {
  const path = lockPathFor(recipe.file);
  const existing = await readLockfile(path);
  if (existing && !options.refresh && lockMatches(existing, recipe)) return { lock: existing, path, status: 'unchanged' };
  if (options.frozen) {
    throw new CairnError(
      existing ? `${path} does not match the recipe (its packages or base changed since it was written)` : `${path} does not exist`,
      'run "cairn lock RECIPE" to write it, or build without --frozen',
    );
  }
  const lock = await resolveLock(recipe, options);
  await writeLockfile(path, lock);
  return { lock, path, status: existing ? 'refreshed' : 'created' };
}
