// Keeps a recipe's lockfile in step with the recipe: reuse it when it matches, resolve afresh
// against the signed archive when it does not (or fail under --frozen).
import { openArchive } from '../debian/archive.js';
import type { FetchCache } from '../debian/fetch-cache.js';
import { lockMatches, lockPathFor, readLockfile, resolutionInputs, writeLockfile, type Lockfile } from '../debian/lockfile.js';
import { resolve } from '../debian/resolver.js';
import { compareVersions } from '../debian/version.js';
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import { lockedPackage } from '../debian/package-downloads.js';

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
  const suites = [base.suite, ...base.extraSuites];
  options.log?.(`resolving against ${base.mirror} ${suites.join(' + ')} (${base.components.join(', ')}, ${base.architecture})`);
  const open = (suite: string) =>
    openArchive({ mirror: base.mirror, suite, components: base.components, architecture: base.architecture, keyring: base.keyring, cache: options.cache });
  const [archive, ...extras] = await Promise.all(suites.map(open));
  const requests = [...new Set([...recipe.packages, recipe.kernel.package])];
  // NAME/SUITE: that suite's newest NAME, and no other version of NAME (apt install NAME/SUITE).
  const picked = requests
    .filter((r) => r.includes('/'))
    .map((request) => {
      const [name, suite] = request.split('/') as [string, string];
      const candidates = extras[base.extraSuites.indexOf(suite)]!.packages.filter(
        (p) => p.name === name && (p.architecture === base.architecture || p.architecture === 'all'),
      );
      if (candidates.length === 0)
        throw new CairnError(
          `${recipe.file}: packages names ${request}, but ${suite} has no ${name} for ${base.architecture}`,
          `drop the /${suite} to take ${name} from ${base.suite}`,
        );
      return candidates.sort((a, b) => compareVersions(b.version, a.version))[0]!;
    });
  const pinned = new Set(picked.map((p) => p.name));
  const result = resolve(
    {
      packages: requests.map((r) => r.split('/')[0]!),
      architecture: base.architecture,
      essential: base.essential,
      priority: base.priority,
      suite: picked.length > 0 ? `${base.suite} + ${picked.map((p) => `${p.name} ${p.version}`).join(', ')}` : base.suite,
    },
    [...archive!.packages.filter((p) => !pinned.has(p.name)), ...picked],
  );
  for (const note of result.notes) options.log?.(note);
  return {
    lockfileVersion: 1,
    recipe: recipe.name,
    inputs: resolutionInputs(recipe),
    origin: { ...archive!.origin, components: base.components, architecture: base.architecture },
    ...(extras.length > 0 ? { extraOrigins: extras.map(({ origin: { suite, inReleaseSha256, date } }) => ({ suite, inReleaseSha256, date })) } : {}),
    packages: result.packages.map(({ record }) => lockedPackage(record)),
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
