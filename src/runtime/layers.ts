// Mounts app layers for a container: each must have been built for the base whose /usr it goes
// over (the SHA-256 of that /usr's lib/cairn/cairn.lock), and its EROFS image must match its
// verity root hash before anything of it is visible.
//
// Where the kernel has device-mapper (the images cairn builds), the image is opened through
// dm-verity: the kernel checks every block against the hash tree each time it reads it, so data
// changed on disk after mounting is refused too (as an I/O error). Where it has not (some
// development VMs), cairn checks the whole image in userspace against the root hash first and
// then mounts it read-only through a loop device: every block is checked, but only once, at
// mount time; a change to the file while it is mounted (by someone who can write it: root) goes
// unnoticed. Layers live in root-owned folders, so that is the same trust as the host's own files.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { runTool } from '../host-tool.js';
import { verifyImage } from '../image/verity.js';
import { readLayer, type LayerOnDisk } from '../layer/metadata.js';
import { BASE_LOCK_PATH } from '../rootfs/identity.js';

/** Where layer mounts live while containers use them. */
export const LAYER_MOUNT_ROOT = '/run/cairn/layers';

export interface MountedLayers {
  /** The mounted layers, in the order given (top first). */
  dirs: string[];
  /** Unmounts every layer and frees its loop or dm-verity device; safe to call again (after a failure, it retries). */
  release(): Promise<void>;
}

export type LayerVerification = 'dm-verity' | 'userspace';

/** Whether this kernel can set up dm-verity devices (it has the device-mapper misc device). */
export function hasDeviceMapper(): boolean {
  try {
    return /\bdevice-mapper\b/.test(readFileSync('/proc/misc', 'utf8'));
  } catch {
    return false;
  }
}

interface Mounted {
  dir: string;
  /** What undoes the mount, in order; each step leaves the list only once it has succeeded. */
  undo: (() => Promise<unknown>)[];
}

const REFUSED_HINT = 'the layer was altered or damaged: rebuild it with "cairn layer build" or copy it again';

/** The base a /usr is: the SHA-256 of its lock, and the recipe name inside it for messages. */
async function baseOf(usrDir: string): Promise<{ lockSha256: string; name: string }> {
  const path = join(usrDir, BASE_LOCK_PATH);
  const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    throw new CairnError(
      `${usrDir} has no ${BASE_LOCK_PATH} (${err.code ?? err.message}): it was not built by this cairn, so no layer can be checked against it`,
      'run layers over the /usr of an image built by "cairn build"',
    );
  });
  let name = 'unknown';
  try {
    const recipe = (JSON.parse(bytes.toString('utf8')) as { recipe?: unknown }).recipe;
    if (typeof recipe === 'string') name = recipe;
  } catch {
    // The hash is the identity; the name only makes the message readable.
  }
  return { lockSha256: createHash('sha256').update(bytes).digest('hex'), name };
}

function label(layer: LayerOnDisk): string {
  return `layer ${layer.metadata.name} ${layer.metadata.version} (${layer.metadataPath})`;
}

async function checkFiles(layer: LayerOnDisk): Promise<void> {
  const { image, verity } = layer.metadata;
  for (const [path, expected, what] of [
    [layer.image, image.size, 'image'],
    [layer.verity, verity.size, 'hash tree'],
  ] as const) {
    const size = await stat(path).then(
      (s) => s.size,
      () => null,
    );
    if (size !== expected) {
      throw new CairnError(
        `${label(layer)} is refused: its ${what} ${path} ${size === null ? 'is missing' : `is ${size} bytes, layer.json says ${expected}`}`,
        REFUSED_HINT,
      );
    }
  }
}

async function verifyInUserspace(layer: LayerOnDisk): Promise<void> {
  const { verity } = layer.metadata;
  const check = await verifyImage(layer.image, layer.verity, verity.rootHash);
  if (!check.ok) throw new CairnError(`${label(layer)} is refused: it does not match its root hash ${verity.rootHash}: ${check.message}`, REFUSED_HINT);
  const sb = check.superblock;
  if (
    sb.salt.toString('hex') !== verity.salt ||
    sb.dataBlocks !== verity.dataBlocks ||
    sb.dataBlockSize !== verity.dataBlockSize ||
    sb.hashBlockSize !== verity.hashBlockSize
  ) {
    throw new CairnError(`${label(layer)} is refused: its hash tree's superblock does not match layer.json`, REFUSED_HINT);
  }
}

async function mountVerified(layer: LayerOnDisk, dir: string, verification: LayerVerification): Promise<Mounted> {
  const { rootHash } = layer.metadata.verity;
  if (verification === 'dm-verity') {
    const name = `cairn-layer-${rootHash.slice(0, 16)}-${randomBytes(4).toString('hex')}`;
    await runTool('veritysetup', ['open', layer.image, name, layer.verity, rootHash]).catch((err: unknown) => {
      throw new CairnError(`${label(layer)} is refused: dm-verity does not accept it against root hash ${rootHash}: ${(err as Error).message}`, REFUSED_HINT);
    });
    try {
      await runTool('mount', ['-t', 'erofs', '-o', 'ro,nodev', `/dev/mapper/${name}`, dir]);
    } catch (err) {
      await runTool('veritysetup', ['close', name]);
      throw err;
    }
    return { dir, undo: [() => runTool('umount', [dir]), () => runTool('veritysetup', ['close', name]), () => rmdir(dir)] };
  }
  await verifyInUserspace(layer);
  const device = (await runTool('losetup', ['--find', '--show', '--read-only', layer.image])).trim();
  try {
    await runTool('mount', ['-t', 'erofs', '-o', 'ro,nodev', device, dir]);
  } finally {
    // Detaching a mounted loop device only marks it to be freed when the mount goes: nothing
    // leaks even if this process dies before release().
    await runTool('losetup', ['--detach', device]);
  }
  return { dir, undo: [() => runTool('umount', [dir]), () => rmdir(dir)] };
}

/**
 * Checks and mounts layers (each a layer folder or its layer.json, top first) for a container
 * whose /usr is `usrDir`. Returns the mounted folders in the same order, to overlay over it.
 * `verification` defaults to dm-verity where the kernel has device-mapper.
 */
export async function mountLayers(
  paths: string[],
  usrDir: string,
  verification: LayerVerification = hasDeviceMapper() ? 'dm-verity' : 'userspace',
): Promise<MountedLayers> {
  if (process.getuid?.() !== 0) throw new CairnError('mounting layers needs root (loop devices, dm-verity, mount)', 'run cairn as root');
  const base = await baseOf(usrDir);
  const layers: LayerOnDisk[] = [];
  for (const path of paths) {
    const layer = await readLayer(path);
    const built = layer.metadata.base;
    if (built.lockSha256 !== base.lockSha256) {
      throw new CairnError(
        `${label(layer)} was built for base ${built.name} (lock ${built.lockSha256.slice(0, 12)}), but ${usrDir} is ${base.name} (lock ${base.lockSha256.slice(0, 12)})`,
        `rebuild the layer for this base: cairn layer build LAYER.yaml --base ${usrDir}`,
      );
    }
    await checkFiles(layer);
    layers.push(layer);
  }
  await mkdir(LAYER_MOUNT_ROOT, { recursive: true, mode: 0o700 });
  const mounted: Mounted[] = [];
  // A step that fails (umount: busy) stays on its list, so calling release again retries it.
  const release = async (): Promise<void> => {
    for (let last = mounted.at(-1); last !== undefined; last = mounted.at(-1)) {
      while (last.undo.length > 0) {
        await last.undo[0]!();
        last.undo.shift();
      }
      mounted.pop();
    }
  };
  try {
    for (const layer of layers) {
      const dir = await mkdtemp(join(LAYER_MOUNT_ROOT, `${layer.metadata.name}-`));
      try {
        mounted.push(await mountVerified(layer, dir, verification));
      } catch (err) {
        await rmdir(dir);
        throw err;
      }
    }
  } catch (err) {
    await release();
    throw err;
  }
  return { dirs: mounted.map((m) => m.dir), release };
}
