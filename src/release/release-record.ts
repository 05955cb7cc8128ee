// A release record (`<name>/releases/<version>/release.json.asc`): what a host needs to install
// one version, signed by the repository key. It pins the build's manifest, the UKI and each slot
// image's chunk index by size and SHA-256, so everything a host downloads for the release is
// covered by this one signature.
import type { ValidateFunction } from 'ajv';
import { compileSchema } from '../document/schema.js';
import schema from './release-record.schema.json' with { type: 'json' };
import { FORMATS } from '../document/formats.js';

export interface FileRef {
  /** File name inside the release folder. */
  path: string;
  size: number;
  sha256: string;
}

export interface ImageRef {
  /** The chunk index (cairn-chunks/1) of the image. */
  index: FileRef;
  /** The image itself, as the index rebuilds it. */
  size: number;
  sha256: string;
  /** Patches (cairn-patches/1) from the release published before, for hosts running it. */
  patches?: FileRef;
}

export interface ReleaseRecord {
  format: typeof FORMATS.release;
  name: string;
  version: string;
  architecture: string;
  published: string;
  /** The dm-verity root hash of usr (also in the UKI's command line). */
  rootHash: string;
  manifest: FileRef;
  images: Record<ReleaseImage, ImageRef>;
}

export const RELEASE_RECORD_KIND = 'a cairn release record';
export const validateReleaseRecord: ValidateFunction<ReleaseRecord> = compileSchema<ReleaseRecord>(schema);

/**
 * The images a release carries as chunk indexes, in the order a host writes them: the two slot
 * images, then the UKI (mostly the same kernel and initramfs from release to release, so it
 * gets deltas too; the host has the old one on its ESP).
 */
export const RELEASE_IMAGES = ['usr', 'verity', 'uki'] as const;
export type ReleaseImage = (typeof RELEASE_IMAGES)[number];

/** The file each image is in a build folder (and, for the UKI, on the ESP without its counter). */
export function imageFile(image: ReleaseImage, name: string, version: string): string {
  return image === 'usr' ? 'usr.erofs' : image === 'verity' ? 'usr.verity' : `${name}_${version}.efi`;
}
