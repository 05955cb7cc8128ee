// What a container's root is made of: a /usr tree shared read-only (the host's own, or a built
// image's rootfs/usr) with app layers overlaid on it (each verified and mounted read-only), or
// an OCI image unpacked into the container's own data folder.
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CairnError } from '../errors.js';
import { mountLayers } from './layers.js';
import { unpackOciImage, type OciImageConfig } from './oci-image.js';
import type { ContainerRoot } from './spec.js';

export interface RootRequest {
  /** The tree to share as /usr; default the host's. */
  usr?: string;
  /** App layers (EROFS images), top first. */
  layers: string[];
  /** An OCI image reference: oci-archive:FILE or oci:DIR. */
  image?: string;
  /** The container's data folder: an OCI image is unpacked into it, and goes with it. */
  dataDir: string;
}

export interface PreparedRoot {
  root: ContainerRoot;
  /** The image's own configuration, for an OCI root. */
  image?: OciImageConfig;
  release(): Promise<void>;
}

export const IMAGE_PREFIXES = ['oci-archive:', 'oci:'] as const;

export function isImageReference(word: string): boolean {
  return IMAGE_PREFIXES.some((p) => word.startsWith(p));
}

export async function prepareRoot(request: RootRequest): Promise<PreparedRoot> {
  if (request.image !== undefined) {
    if (request.layers.length > 0)
      throw new CairnError('--layer goes with the shared /usr, not with an OCI image', 'drop --layer, or run from the shared /usr');
    const rootfs = join(request.dataDir, 'rootfs');
    const image = await unpackOciImage(request.image, rootfs);
    return { root: { rootfs }, image, release: async () => undefined };
  }
  const usr = resolve(request.usr ?? '/usr');
  const info = await stat(usr).catch(() => null);
  if (!info?.isDirectory()) throw new CairnError(`--usr ${usr}: not a directory`, 'point at a /usr tree, e.g. images/<name>/<version>/rootfs/usr');
  if (!(await stat(resolve(usr, 'bin')).catch(() => null))?.isDirectory()) {
    throw new CairnError(`--usr ${usr}: has no bin/, so it is not a /usr tree`, 'point at a /usr tree, e.g. images/<name>/<version>/rootfs/usr');
  }
  if (request.layers.length === 0) return { root: { usr, layers: [] }, release: async () => undefined };
  const mounted = await mountLayers(request.layers, usr);
  return { root: { usr, layers: mounted.dirs }, release: mounted.release };
}
