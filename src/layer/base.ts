// The base a layer is built for, named by the lock it was built from: a recipe (its lock, which
// its build ships in the image), a build folder or tree holding /usr/lib/cairn/cairn.lock, or a
// lockfile. The lock says which archive the base came from and exactly what it holds.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parsePackagesIndex } from '../debian/packages-index.js';
import { readDebControl } from '../debian/deb-reader.js';
import type { FetchCache } from '../debian/fetch-cache.js';
import { lockfileSha256, lockMatches, lockPathFor, readLockfile, type Lockfile } from '../debian/lockfile.js';
import type { PackageRecord } from '../debian/types.js';
import { CairnError } from '../errors.js';
import { shipped, DEFAULT_KEYRING } from '../install.js';
import { loadRecipe } from '../recipe/load.js';
import { BASE_LOCK_PATH } from '../rootfs/identity.js';
import { fetchPackages } from '../debian/package-downloads.js';

export interface LayerBase {
  lock: Lockfile;
  /** What layers and hosts compare: the SHA-256 of the image's /usr/lib/cairn/cairn.lock. */
  lockSha256: string;
  /** The keyring that signs the base archive's InRelease. */
  keyring: string;
}

/** Where a build folder, a root tree or a /usr tree keeps the base lock, in that order. */
function lockCandidates(dir: string): string[] {
  return [join(dir, 'rootfs', 'usr', BASE_LOCK_PATH), join(dir, 'usr', BASE_LOCK_PATH), join(dir, BASE_LOCK_PATH)];
}

/**
 * A lock and the hash that names it. In a tree the bytes are what a host will hash; a lockfile
 * (or a recipe's) stands for the image built from it, which carries the lock in canonical form.
 */
async function fromLockFile(path: string, inTree: boolean): Promise<{ lock: Lockfile; lockSha256: string }> {
  const lock = await readLockfile(path);
  if (lock === null) throw new CairnError(`${path} does not exist`);
  const lockSha256 = inTree
    ? createHash('sha256')
        .update(await readFile(path))
        .digest('hex')
    : lockfileSha256(lock);
  return { lock, lockSha256 };
}

/**
 * Opens the base at `path`; `keyring` is the layer file's keyring for a base that is not a
 * recipe (a recipe names its own), null for the one shipped with cairn.
 */
export async function openLayerBase(path: string, keyring: string | null): Promise<LayerBase> {
  const info = await stat(path).catch(() => {
    throw new CairnError(`base ${path} does not exist`, 'name a recipe, a build folder (images/<name>/<version>) or a /usr tree');
  });
  const shippedKeyring = keyring ?? shipped(DEFAULT_KEYRING);
  if (info.isDirectory()) {
    for (const candidate of lockCandidates(path)) {
      if (
        await stat(candidate).then(
          (s) => s.isFile(),
          () => false,
        )
      )
        return { ...(await fromLockFile(candidate, true)), keyring: shippedKeyring };
    }
    throw new CairnError(
      `${path} holds no ${BASE_LOCK_PATH} (looked in rootfs/usr/, usr/ and the folder itself)`,
      'name a build folder, root tree or /usr tree of an image built by this cairn (older builds do not carry their lock: rebuild them)',
    );
  }
  if (/\.ya?ml$/.test(path)) {
    const recipe = await loadRecipe(path);
    const lockPath = lockPathFor(recipe.file);
    const lock = await readLockfile(lockPath);
    if (lock === null || !lockMatches(lock, recipe)) {
      throw new CairnError(
        `${lockPath} ${lock === null ? 'does not exist' : 'does not match the recipe'}: the base was not built from what the recipe says now`,
        `build the base first ("cairn build ${path}"), so the image and the layer share one lock`,
      );
    }
    return { lock, lockSha256: lockfileSha256(lock), keyring: keyring ?? recipe.base.keyring };
  }
  return { ...(await fromLockFile(path, false)), keyring: shippedKeyring };
}

/**
 * The base's packages as index records (their Depends, Provides and Conflicts matter to the
 * layer's resolution): from the archive when it still has the locked version, else from the
 * control file of the locked .deb (the cache has it when this host built the base).
 */
export async function baseRecords(lock: Lockfile, archive: PackageRecord[], cache: FetchCache): Promise<PackageRecord[]> {
  const bySha = new Map(archive.map((record) => [record.sha256, record]));
  const records: PackageRecord[] = [];
  const missing = lock.packages.filter((pkg) => {
    const record = bySha.get(pkg.sha256);
    if (record !== undefined) records.push(record);
    return record === undefined;
  });
  if (missing.length === 0) return records;
  const fetched = await fetchPackages(cache, lock.origin.mirror, missing).catch((err: unknown) => {
    if (!(err instanceof CairnError)) throw err;
    throw new CairnError(
      `the archive no longer has ${missing.length} of the base's packages (${missing
        .slice(0, 3)
        .map((p) => `${p.name} ${p.version}`)
        .join(', ')}…) and the cache cannot get them: ${err.message}`,
      'build the layer on the host that built the base (its cache has them), or rebuild the base against the archive as it is now',
    );
  });
  for (const pkg of missing) {
    const path = fetched.paths.get(pkg.sha256)!;
    const control = (await readDebControl(path)).files.get('control')!.toString('utf8').trimEnd();
    const stanza = `${control}\nFilename: ${pkg.filename}\nSize: ${pkg.size}\nSHA256: ${pkg.sha256}\n`;
    records.push(...parsePackagesIndex(stanza, { origin: path }));
  }
  return records;
}
