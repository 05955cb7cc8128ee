// The rootfs stage: fetch the locked packages, check the kernel before anything is built, and
// assemble the root tree plus a reproducible tar of it, all or nothing.
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readDebFile } from '../debian/deb-reader.js';
import type { FetchCache } from '../debian/fetch-cache.js';
import { formatLockfile, type Lockfile } from '../debian/lockfile.js';
import type { Progress } from '../debian/progress.js';
import type { LockedPackage } from '../debian/types.js';
import { CairnError } from '../errors.js';
import { sha256File } from '../hash-file.js';
import { assertKernelConfig, parseKernelConfig } from '../image/kernel-config.js';
import type { Recipe } from '../recipe/types.js';
import { assembleRoot } from '../rootfs/assemble.js';
import { writeTreeTar } from '../rootfs/tree-tar.js';

export interface RootfsStageOptions {
  cache: FetchCache;
  /** images/<name>/<version> */
  outDir: string;
  sourceDateEpoch: number;
  progress?: Progress;
  log?: (line: string) => void;
}

export interface RootfsStageResult {
  rootfs: string;
  tar: string;
  tarSha256: string;
  packages: number;
  downloadedFiles: number;
  downloadedBytes: number;
}

function archiveUrl(lock: Lockfile, pkg: LockedPackage): string {
  return `${lock.origin.mirror.replace(/\/+$/, '')}/${pkg.filename}`;
}

async function fetchPackages(lock: Lockfile, packages: LockedPackage[], options: RootfsStageOptions) {
  return options.cache.fetchAll(
    packages.map((p) => ({ url: archiveUrl(lock, p), sha256: p.sha256, size: p.size, name: `${p.name}_${p.version}_${p.architecture}.deb` })),
    { progress: options.progress },
  );
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

/** Reads the kernel's /boot/config-* from the locked linux-image packages and checks the recipe's fragment. */
async function checkKernel(recipe: Recipe, lock: Lockfile, options: RootfsStageOptions): Promise<{ downloadedFiles: number; downloadedBytes: number }> {
  const candidates = lock.packages.filter((p) => p.name.startsWith('linux-image-'));
  const fetched = await fetchPackages(lock, candidates, options);
  for (const pkg of candidates) {
    const found = await readDebFile(fetched.paths.get(pkg.sha256)!, (path) => /^boot\/config-[^/]+$/.test(path));
    if (!found) continue;
    const fragmentText = await readFile(recipe.kernel.config, 'utf8');
    assertKernelConfig(
      parseKernelConfig(fragmentText, recipe.kernel.config),
      recipe.kernel.config,
      parseKernelConfig(found.data.toString('utf8'), `${pkg.name}:/${found.path}`),
      `${pkg.name} ${pkg.version}: /${found.path}`,
    );
    options.log?.(`kernel ${pkg.name} ${pkg.version} satisfies ${recipe.kernel.config}`);
    return fetched;
  }
  throw new CairnError(
    `no kernel configuration found: none of ${candidates.map((p) => p.name).join(', ') || 'the locked packages (no linux-image-*)'} ships /boot/config-*`,
    `kernel.package (${recipe.kernel.package}) must be a Debian linux-image package or depend on one`,
  );
}


export async function buildRootfs(recipe: Recipe, lock: Lockfile, options: RootfsStageOptions): Promise<RootfsStageResult> {
  const kernel = await checkKernel(recipe, lock, options);
  const fetched = await fetchPackages(lock, lock.packages, options);
  await mkdir(options.outDir, { recursive: true });
  const rootfs = join(options.outDir, 'rootfs');
  const tar = join(options.outDir, 'rootfs.tar');
  const stamp = `${process.pid}-${Date.now()}`;
  const tmpRoot = join(options.outDir, `.rootfs.${stamp}.tmp`);
  const tmpTar = join(options.outDir, `.rootfs.tar.${stamp}.tmp`);
  try {
    options.log?.(`assembling ${lock.packages.length} packages`);
    await assembleRoot({
      recipe,
      debs: lock.packages.map((pkg) => ({ pkg, path: fetched.paths.get(pkg.sha256)! })),
      outDir: tmpRoot,
      sourceDateEpoch: options.sourceDateEpoch,
      lockfile: formatLockfile(lock),
      log: options.log,
    });
    await writeTreeTar(tmpRoot, tmpTar, options.sourceDateEpoch);
    await rm(rootfs, { recursive: true, force: true });
    await rename(tmpRoot, rootfs);
    await rename(tmpTar, tar);
  } catch (err) {
    await rm(tmpRoot, { recursive: true, force: true });
    await rm(tmpTar, { force: true });
    throw err;
  }
  return {
    rootfs,
    tar,
    tarSha256: (await sha256File(tar)).toString('hex'),
    packages: lock.packages.length,
    downloadedFiles: kernel.downloadedFiles + fetched.downloadedFiles,
    downloadedBytes: kernel.downloadedBytes + fetched.downloadedBytes,
  };
}
