// A release record (`<name>/releases/<version>/release.json.asc`): what a host needs to install
// one version, signed by the repository key. It pins the build's manifest, the UKI and each slot
// image's chunk index by size and SHA-256, so everything a host downloads for the release is
// covered by this one signature.
import type { ValidateFunction } from 'ajv';
import { compileSchema } from './json-document.js';
import schema from './release-record.schema.json' with { type: 'json' };

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
}

export interface ReleaseRecord {
  format: 'cairn-release/1';
  name: string;
  version: string;
  architecture: string;
  published: string;
  /** The dm-verity root hash of usr (also in the UKI's command line). */
  rootHash: string;
  manifest: FileRef;
  uki: FileRef;
  images: { usr: ImageRef; verity: ImageRef };
}

export const RELEASE_RECORD_KIND = 'a cairn release record';
export const validateReleaseRecord: ValidateFunction<ReleaseRecord> = compileSchema<ReleaseRecord>(schema);

/** The slot images a release carries, in the order a host writes them. */
export const SLOT_IMAGES = [
  { key: 'usr', file: 'usr.erofs' },
  { key: 'verity', file: 'usr.verity' },
] as const;
