// The rootfs stage: fetch the locked packages, check the kernel before anything is built, and
// assemble the root tree plus a reproducible tar of it, all or nothing.
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readDebFile } from '../debian/deb-reader.js';
import { formatLockfile } from '../debian/lockfile.js';
import { fetchPackages } from '../debian/package-downloads.js';
import { CairnError } from '../errors.js';
import { sha256File } from '../hash-file.js';
import { assertKernelConfig, parseKernelConfig } from '../image/kernel-config.js';
import { assembleRoot } from '../rootfs/assemble.js';
import { writeTreeTar } from '../rootfs/tree-tar.js';
import type { BuildContext } from './context.js';

export interface RootfsStageResult {
  rootfs: string;
  tar: string;
  tarSha256: string;
  packages: number;
  downloadedFiles: number;
  downloadedBytes: number;
}

/** Reads the kernel's /boot/config-* from the locked linux-image packages and checks the recipe's fragment. */
async function checkKernel({ recipe, lock, cache, progress, log }: BuildContext): Promise<{ downloadedFiles: number; downloadedBytes: number }> {
  const candidates = lock.packages.filter((p) => p.name.startsWith('linux-image-'));
  const fetched = await fetchPackages(cache, lock.origin.mirror, candidates, progress);
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
    log(`kernel ${pkg.name} ${pkg.version} satisfies ${recipe.kernel.config}`);
    return fetched;
  }
  throw new CairnError(
    `no kernel configuration found: none of ${candidates.map((p) => p.name).join(', ') || 'the locked packages (no linux-image-*)'} ships /boot/config-*`,
    `kernel.package (${recipe.kernel.package}) must be a Debian linux-image package or depend on one`,
  );
}

export async function buildRootfs(ctx: BuildContext): Promise<RootfsStageResult> {
  const { recipe, lock, outDir, sourceDateEpoch, log } = ctx;
  const kernel = await checkKernel(ctx);
  const fetched = await fetchPackages(ctx.cache, lock.origin.mirror, lock.packages, ctx.progress);
  await mkdir(outDir, { recursive: true });
  const rootfs = join(outDir, 'rootfs');
  const tar = join(outDir, 'rootfs.tar');
  const stamp = `${process.pid}-${Date.now()}`;
  const tmpRoot = join(outDir, `.rootfs.${stamp}.tmp`);
  const tmpTar = join(outDir, `.rootfs.tar.${stamp}.tmp`);
  try {
    log(`assembling ${lock.packages.length} packages`);
    await assembleRoot({
      recipe,
      debs: lock.packages.map((pkg) => ({ pkg, path: fetched.paths.get(pkg.sha256)! })),
      outDir: tmpRoot,
      sourceDateEpoch,
      lockfile: formatLockfile(lock),
      log,
    });
    await writeTreeTar(tmpRoot, tmpTar, sourceDateEpoch);
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
