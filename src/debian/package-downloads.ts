// Locked packages as downloads: each .deb by its archive path under the mirror, checked against
// the SHA-256 and size the lock recorded, and named as apt names the files it keeps.
import type { FetchCache, FetchResult } from './fetch-cache.js';
import type { Progress } from './progress.js';
import type { LockedPackage, PackageRecord } from './types.js';

/** The lock's record of a package the resolver chose. */
export function lockedPackage(record: PackageRecord): LockedPackage {
  const { name, version, architecture, size, sha256, filename } = record;
  return { name, version, architecture, size, sha256, filename };
}

/** Fetches `packages` from `mirror` into the cache (what it holds already is not downloaded again). */
export function fetchPackages(cache: FetchCache, mirror: string, packages: LockedPackage[], progress?: Progress): Promise<FetchResult> {
  const base = mirror.replace(/\/+$/, '');
  return cache.fetchAll(
    packages.map((p) => ({ url: `${base}/${p.filename}`, sha256: p.sha256, size: p.size, name: `${p.name}_${p.version}_${p.architecture}.deb` })),
    { progress },
  );
}
