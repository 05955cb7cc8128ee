// The build, in stage order: lock (reusing a matching lock), fetch, check the kernel and assemble
// the tree; the verified /usr; the initramfs, the UKI and the disk; then the manifest over them.
// `stage` says where to stop. Every artifact is written under a temporary name and renamed when complete.
import { join } from 'node:path';
import type * as openpgp from 'openpgp';
import { FetchCache } from '../debian/fetch-cache.js';
import { lockfileSha256, sourceDateEpoch } from '../debian/lockfile.js';
import type { Progress } from '../debian/progress.js';
import { FORMATS } from '../document/formats.js';
import { convertDisk, type DiskFormat } from '../image/disk-formats.js';
import type { Recipe } from '../recipe/types.js';
import { artifactEntries, MANIFEST, writeManifest } from './manifest.js';
import type { BuildContext } from './context.js';
import { buildBoot, buildDiskImage, buildUsr, type BootArtifacts, type UsrArtifacts } from './image-stages.js';
import { ensureLock, type LockStatus } from './lock.js';
import { buildRootfs, type RootfsStageResult } from './rootfs-stage.js';

export const STAGES = ['rootfs', 'usr', 'disk'] as const;
export type Stage = (typeof STAGES)[number];

export interface BuildOptions {
  /** The last stage to run (default disk). */
  stage?: Stage;
  /** Fail if the lock is missing or stale instead of resolving again. */
  frozen?: boolean;
  cache?: FetchCache;
  /** The build goes to OUT/<name>/<version> (default images). */
  out?: string;
  /** Disk formats besides disk.raw to write (qcow2, vmdk, vhd), each listed in the manifest. */
  formats?: DiskFormat[];
  /** Signs manifest.json; loaded by the caller, so a bad key stops the build before any work. */
  signKey?: openpgp.PrivateKey | null;
  progress?: Progress;
  log?: (line: string) => void;
}

export interface BuildResult {
  recipe: string;
  version: string;
  outDir: string;
  lockfile: { path: string; status: LockStatus; packages: number };
  rootfs: RootfsStageResult;
  usr?: UsrArtifacts;
  boot?: BootArtifacts;
  disk?: string;
  /** The disk in other formats, by format. */
  converted?: Partial<Record<DiskFormat, string>>;
  /** The manifest's path, and whether it is signed. */
  manifest?: { path: string; signed: boolean };
}

export async function buildImage(recipe: Recipe, options: BuildOptions = {}): Promise<BuildResult> {
  const stage = options.stage ?? 'disk';
  const log = options.log ?? ((): void => undefined);
  const cache = options.cache ?? new FetchCache();
  const { lock, path: lockPath, status } = await ensureLock(recipe, { cache, frozen: options.frozen, log });
  log(`${lockPath}: ${status === 'unchanged' ? 'matches the recipe' : status} (${lock.packages.length} packages)`);
  const ctx: BuildContext = {
    recipe,
    lock,
    outDir: join(options.out ?? 'images', recipe.name, recipe.version),
    sourceDateEpoch: sourceDateEpoch(lock),
    cache,
    progress: options.progress,
    log,
  };
  const result: BuildResult = {
    recipe: recipe.name,
    version: recipe.version,
    outDir: ctx.outDir,
    lockfile: { path: lockPath, status, packages: lock.packages.length },
    rootfs: await buildRootfs(ctx),
  };
  if (stage === 'rootfs') return result;
  log('making usr.erofs and its verity tree');
  const usr = (result.usr = await buildUsr(ctx, result.rootfs.rootfs));
  if (stage === 'usr') return result;
  log('making the initramfs and the UKI');
  const boot = (result.boot = await buildBoot(ctx, result.rootfs.rootfs, usr.verity.rootHash));
  log('making the ESP, the root file system and disk.raw');
  const disk = (result.disk = await buildDiskImage(ctx, result.rootfs.rootfs, usr, boot));
  const converted: Partial<Record<DiskFormat, string>> = {};
  for (const format of new Set(options.formats ?? [])) {
    if (format === 'raw') continue;
    log(`converting disk.raw to ${format}`);
    converted[format] = await convertDisk(disk, format, ctx.outDir, ctx.sourceDateEpoch);
  }
  result.converted = converted;
  const key = options.signKey ?? null;
  await writeManifest(
    ctx.outDir,
    {
      format: FORMATS.manifest,
      name: recipe.name,
      version: recipe.version,
      architecture: recipe.base.architecture,
      lockfileSha256: lockfileSha256(lock),
      sourceDateEpoch: ctx.sourceDateEpoch,
      usr: { rootHash: usr.verity.rootHash, salt: usr.verity.salt, dataBlocks: usr.verity.dataBlocks },
      kernel: { version: boot.kernelVersion, cmdline: boot.cmdline },
      artifacts: await artifactEntries([usr.usr, usr.usrVerity, boot.uki, disk, ...Object.values(converted)]),
    },
    key,
  );
  result.manifest = { path: join(ctx.outDir, MANIFEST), signed: key !== null };
  return result;
}
