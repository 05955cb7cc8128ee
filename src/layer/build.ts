// Builds an app layer: the LAYER.yaml packages resolved against the base's archive with the
// base's locked packages counted as installed, so only what the base lacks goes in; extracted
// with the image rules (merged /usr, /etc kept as /usr/share/factory/etc), reduced to /usr,
// made into an EROFS image with its dm-verity tree, and described by layer.json.
import { lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openArchive } from '../debian/archive.js';
import type { FetchCache } from '../debian/fetch-cache.js';
import type { Progress } from '../debian/progress.js';
import { resolve } from '../debian/resolver.js';
import type { LockedPackage } from '../debian/types.js';
import { CairnError } from '../errors.js';
import { sha256File } from '../hash-file.js';
import { buildUsrImage } from '../image/erofs.js';
import { computeVerity } from '../image/verity.js';
import { extractPackages } from '../rootfs/extract.js';
import { moveEtcToFactory, setTimes } from '../rootfs/layout.js';
import { MERGED_DIRS, Tree } from '../rootfs/tree.js';
import { baseRecords, openLayerBase } from './base.js';
import { type LayerMetadata, writeLayerMetadata } from './metadata.js';
import type { LayerSpec } from './spec.js';
import { FORMATS } from '../document/formats.js';
import { fetchPackages, lockedPackage } from '../debian/package-downloads.js';
import { sourceDateEpoch } from '../debian/lockfile.js';

export interface LayerBuildOptions {
  /** The base (recipe, build folder, tree or lockfile); overrides the layer file's. */
  base?: string;
  /** Folder for the layer's files; default images/layers/<name>/<version>. */
  outDir?: string;
  cache: FetchCache;
  progress?: Progress;
  log?: (line: string) => void;
}

export interface LayerBuildResult {
  dir: string;
  metadataPath: string;
  metadata: LayerMetadata;
  /** Requested packages the base already has, and the resolver's other remarks. */
  notes: string[];
  /** Files the packages ship outside /usr and /etc, which a layer cannot carry. */
  dropped: string[];
}

export function layerFileBase(spec: Pick<LayerSpec, 'name' | 'version'>): string {
  return `${spec.name}_${spec.version}`;
}

/** Image paths of everything but directories below `dir` (host path), for saying what was left out. */
async function filesBelow(dir: string, imagePath: string): Promise<string[]> {
  const st = await lstat(dir);
  if (!st.isDirectory()) return [imagePath];
  const found: string[] = [];
  for (const name of (await readdir(dir)).sort()) found.push(...(await filesBelow(join(dir, name), `${imagePath}/${name}`)));
  return found;
}

/** Leaves only /usr (and the merge links into it) in the tree; returns the files it removed. */
async function reduceToUsr(root: string): Promise<string[]> {
  const dropped: string[] = [];
  for (const name of (await readdir(root)).sort()) {
    if (name === 'usr' || (MERGED_DIRS as readonly string[]).includes(name)) continue;
    dropped.push(...(await filesBelow(join(root, name), `/${name}`)));
    await rm(join(root, name), { recursive: true, force: true });
  }
  return dropped;
}

export async function buildLayer(spec: LayerSpec, options: LayerBuildOptions): Promise<LayerBuildResult> {
  const { cache, log } = options;
  const basePath = options.base ?? spec.base;
  if (basePath === null) {
    throw new CairnError(`${spec.file} names no base`, 'add "base: path/to/recipe.yaml" (or a build folder) to the layer file, or pass --base');
  }
  const base = await openLayerBase(basePath, spec.keyring);
  const { origin } = base.lock;
  log?.(
    `base ${base.lock.recipe} (lock ${base.lockSha256.slice(0, 12)}…, ${base.lock.packages.length} packages); resolving against ${origin.mirror} ${origin.suite}`,
  );
  const archive = await openArchive({
    mirror: origin.mirror,
    suite: origin.suite,
    components: origin.components,
    architecture: origin.architecture,
    keyring: base.keyring,
    cache,
    progress: options.progress,
  });
  const installed = await baseRecords(base.lock, archive.packages, cache);
  const result = resolve(
    {
      packages: spec.packages,
      architecture: origin.architecture,
      essential: false,
      priority: 'none',
      suite: origin.suite,
      installed,
    },
    archive.packages,
  );
  for (const note of result.notes) log?.(note);
  if (result.packages.length === 0) {
    throw new CairnError(
      `every package ${spec.file} asks for is already in the base ${base.lock.recipe}: the layer would be empty`,
      'list packages the base lacks, or use the base as it is',
    );
  }
  const packages: LockedPackage[] = result.packages.map(({ record }) => lockedPackage(record));
  log?.(`the layer adds ${packages.length} packages: ${packages.map((p) => p.name).join(', ')}`);
  const fetched = await fetchPackages(cache, origin.mirror, packages, options.progress);

  const dir = options.outDir ?? join('images', 'layers', spec.name, spec.version);
  await mkdir(dir, { recursive: true });
  const epoch = sourceDateEpoch(base.lock);
  const fileBase = layerFileBase(spec);
  const imagePath = join(dir, `${fileBase}.layer`);
  const verityPath = join(dir, `${fileBase}.verity`);
  const work = await mkdtemp(join(dir, '.layer-'));
  try {
    const root = join(work, 'root');
    await mkdir(root, { mode: 0o755 });
    const tree = new Tree(root);
    await extractPackages(
      tree,
      packages.map((pkg) => ({ pkg, path: fetched.paths.get(pkg.sha256)! })),
      log,
    );
    moveEtcToFactory(tree);
    const dropped = await reduceToUsr(root);
    if (dropped.length > 0)
      log?.(`left out ${dropped.length} files outside /usr (a layer holds /usr only): ${dropped.slice(0, 5).join(', ')}${dropped.length > 5 ? ', …' : ''}`);
    setTimes(root, epoch);
    const image = await buildUsrImage({ rootfs: root, output: imagePath, sourceDateEpoch: epoch, compression: spec.compression });
    const imageSha256 = await sha256File(imagePath);
    // The image's own hash as the salt, as for /usr: the same image always gets the same tree.
    const verity = await computeVerity(imagePath, verityPath, { salt: imageSha256 });
    const metadata: LayerMetadata = {
      format: FORMATS.layer,
      name: spec.name,
      version: spec.version,
      description: spec.description,
      architecture: origin.architecture,
      base: { name: base.lock.recipe, lockSha256: base.lockSha256 },
      origin: { mirror: archive.origin.mirror, suite: archive.origin.suite, inReleaseSha256: archive.origin.inReleaseSha256, date: archive.origin.date },
      sourceDateEpoch: epoch,
      packages: packages.map(({ name, version, architecture, sha256 }) => ({ name, version, architecture, sha256 })),
      image: { file: `${fileBase}.layer`, size: image.size, sha256: imageSha256.toString('hex') },
      verity: {
        file: `${fileBase}.verity`,
        size: verity.hashSize,
        rootHash: verity.rootHash,
        salt: verity.salt,
        dataBlocks: verity.dataBlocks,
        dataBlockSize: verity.dataBlockSize,
        hashBlockSize: verity.hashBlockSize,
      },
    };
    const metadataPath = await writeLayerMetadata(dir, metadata);
    return { dir, metadataPath, metadata, notes: result.notes, dropped };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The JSON form `cairn layer build --json` prints. */
export function layerBuildJson(result: LayerBuildResult): object {
  return { dir: result.dir, metadata: result.metadataPath, ...result.metadata, notes: result.notes, dropped: result.dropped };
}

export function formatLayerBuild({ metadata, dir, metadataPath, dropped }: LayerBuildResult): string {
  const lines = [
    `layer         ${metadata.name} ${metadata.version} (${metadata.architecture})`,
    `base          ${metadata.base.name}, lock sha256 ${metadata.base.lockSha256}`,
    `packages      ${metadata.packages.map((p) => `${p.name} ${p.version}`).join(', ')}`,
    `image         ${dir}/${metadata.image.file} (${metadata.image.size} bytes)`,
    `verity        ${dir}/${metadata.verity.file}, root hash ${metadata.verity.rootHash}`,
    `metadata      ${metadataPath}`,
  ];
  if (dropped.length > 0)
    lines.push(`left out      ${dropped.length} files outside /usr (${dropped.slice(0, 3).join(', ')}${dropped.length > 3 ? ', …' : ''})`);
  return lines.join('\n') + '\n';
}
