// layer.json: what a layer is (name, version, the packages in it), which base it was built for
// (the SHA-256 of that base's lock), and how to check its image (the verity root hash). Hosts read
// it before mounting anything, so it is treated as hostile: bounded, schema-checked, and its file
// names are plain names in the layer's own folder.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CairnError } from '../errors.js';
import { parseJsonDocument } from '../document/json-document.js';
import { compileSchema } from '../document/schema.js';
import { writeFileAtomic } from '../fs-atomic.js';
import schema from './layer-metadata.schema.json' with { type: 'json' };
import { FORMATS } from '../document/formats.js';

export const LAYER_METADATA = 'layer.json';
const MAX_METADATA = 4 << 20;

export interface LayerMetadata {
  format: typeof FORMATS.layer;
  name: string;
  version: string;
  description: string;
  architecture: string;
  /** The base the layer was built for: a host's /usr/lib/cairn/cairn.lock must have this SHA-256. */
  base: { name: string; lockSha256: string };
  /** The archive the layer's packages came from (one verified InRelease). */
  origin: { mirror: string; suite: string; inReleaseSha256: string; date: string };
  sourceDateEpoch: number;
  /** Only what the base lacks, sorted by name. */
  packages: { name: string; version: string; architecture: string; sha256: string }[];
  /** The EROFS image, beside layer.json. */
  image: { file: string; size: number; sha256: string };
  /** Its dm-verity hash device, beside layer.json. */
  verity: { file: string; size: number; rootHash: string; salt: string; dataBlocks: number; dataBlockSize: number; hashBlockSize: number };
}

/** A layer on disk: its metadata and the absolute paths of its files. */
export interface LayerOnDisk {
  metadata: LayerMetadata;
  metadataPath: string;
  image: string;
  verity: string;
}

const validate = compileSchema<LayerMetadata>(schema);

export function formatLayerMetadata(metadata: LayerMetadata): string {
  return JSON.stringify(metadata, null, 2) + '\n';
}

export async function writeLayerMetadata(dir: string, metadata: LayerMetadata): Promise<string> {
  const path = join(dir, LAYER_METADATA);
  await writeFileAtomic(path, formatLayerMetadata(metadata));
  return path;
}

export function parseLayerMetadata(text: string, where: string): LayerMetadata {
  const hint = 'rebuild the layer with "cairn layer build", or fetch it again';
  const data = parseJsonDocument(text, where, validate, 'layer metadata', MAX_METADATA, hint);
  if (data.image.file === data.verity.file || [data.image.file, data.verity.file].includes(LAYER_METADATA)) {
    throw new CairnError(`${where}: the image and its hash tree must be two files other than ${LAYER_METADATA}`, hint);
  }
  return data;
}

/** Reads a layer given as its layer.json or the folder holding it. */
export async function readLayer(path: string): Promise<LayerOnDisk> {
  const info = await stat(path).catch(() => {
    throw new CairnError(`layer ${path} does not exist`, 'name a layer folder or its layer.json (from "cairn layer build")');
  });
  const metadataPath = info.isDirectory() ? join(path, LAYER_METADATA) : path;
  const size = (
    await stat(metadataPath).catch(() => {
      throw new CairnError(`${path} is not a cairn layer: ${metadataPath} is missing`, 'name a layer folder or its layer.json (from "cairn layer build")');
    })
  ).size;
  if (size > MAX_METADATA) throw new CairnError(`${metadataPath}: ${size} bytes is too big for layer metadata`);
  const metadata = parseLayerMetadata(await readFile(metadataPath, 'utf8'), metadataPath);
  const dir = dirname(metadataPath);
  return { metadata, metadataPath, image: join(dir, metadata.image.file), verity: join(dir, metadata.verity.file) };
}
