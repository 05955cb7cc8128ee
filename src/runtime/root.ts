// What a container's root is made of. Today: a /usr tree shared read-only (the host's own, or
// a built image's rootfs/usr). The seam for app layers and OCI images is here: both arrive as
// directories (verified layer mounts, an unpacked image) and a release() to undo them.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CairnError } from '../errors.js';
import type { ContainerRoot } from './spec.js';

export interface RootRequest {
  /** The tree to share as /usr; default the host's. */
  usr?: string;
  /** App layers (EROFS images), top first. */
  layers: string[];
  /** An OCI image reference: oci-archive:FILE or oci:DIR. */
  image?: string;
}

export interface PreparedRoot {
  root: ContainerRoot;
  /** The image's own configuration, for an OCI root. */
  image?: { args: string[]; env: string[]; cwd: string; user: string };
  release(): Promise<void>;
}

export const IMAGE_PREFIXES = ['oci-archive:', 'oci:'] as const;

export function isImageReference(word: string): boolean {
  return IMAGE_PREFIXES.some((p) => word.startsWith(p));
}

export async function prepareRoot(request: RootRequest): Promise<PreparedRoot> {
  if (request.image !== undefined) {
    throw new CairnError(`cannot run ${request.image}: OCI images need cairn's layer support, which this build does not have yet`, 'run from the shared /usr: cairn run -- CMD');
  }
  if (request.layers.length > 0) {
    throw new CairnError(`cannot mount --layer ${request.layers[0]}: app layers need cairn's layer support, which this build does not have yet`, 'run from the shared /usr without --layer');
  }
  const usr = resolve(request.usr ?? '/usr');
  const info = await stat(usr).catch(() => null);
  if (!info?.isDirectory()) throw new CairnError(`--usr ${usr}: not a directory`, 'point at a /usr tree, e.g. images/<name>/<version>/rootfs/usr');
  if (!(await stat(resolve(usr, 'bin')).catch(() => null))?.isDirectory()) {
    throw new CairnError(`--usr ${usr}: has no bin/, so it is not a /usr tree`, 'point at a /usr tree, e.g. images/<name>/<version>/rootfs/usr');
  }
  return { root: { usr, layers: [] }, release: async () => undefined };
}
