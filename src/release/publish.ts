// `cairn publish`: adds a build to an update repository. Chunks go into the shared store first
// (a chunk already there is not written again), then the release folder is assembled under a
// temporary name and renamed into place, so a release is either absent or whole: a reader (or a
// crash) never sees one without its record, and the record is what hosts look for.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';
import { readRange } from '../file-range.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { sha256File } from '../hash-file.js';
import { buildChunkIndex, validateChunkIndex, type ChunkIndex } from './chunk-index.js';
import { ChunkStore } from './chunk-store.js';
import { PACKED_JSON, packJson, unpackJson } from '../document/json-document.js';
import { MANIFEST, SIGNATURE, mismatchedArtifacts, readManifest } from '../pipeline/manifest.js';
import {
  imageFile,
  RELEASE_IMAGES,
  RELEASE_RECORD_KIND,
  validateReleaseRecord,
  type FileRef,
  type ImageRef,
  type ReleaseImage,
  type ReleaseRecord,
} from './release-record.js';
import { makePatchSet, patchWriter } from './patch-set.js';
import { CHUNKS_DIR, RELEASE_RECORD, releaseDir } from './repository-layout.js';
import { readSignedJsonUnverified, signJson } from './signed-json.js';
import { FORMATS } from '../document/formats.js';

export interface PublishOptions {
  buildDir: string;
  repoDir: string;
  key: openpgp.PrivateKey;
  /** Brotli quality for new chunks (default: the store's). */
  quality?: number;
  now?: Date;
  /** Called per image as it is chunked. */
  onImage?: (file: string, size: number) => void;
  /**
   * The release to make patches from (hosts running it download patches instead of changed
   * chunks). Default: the release of the same image published last; false: no patches.
   */
  deltaFrom?: string | false;
}

/** The images that get patches: the verity tree is recomputed by hosts, never downloaded whole. */
const PATCHED_IMAGES: readonly ReleaseImage[] = ['usr', 'uki'];

export interface ImageSummary {
  file: string;
  size: number;
  chunks: number;
  addedChunks: number;
  /** Compressed bytes this publish added to the store for the image. */
  addedBytes: number;
  /** Compressed bytes of all the image's chunks (what a host with nothing would download). */
  storedBytes: number;
  /** Patches from the previous release: how many, their bytes, and the chunk bytes they replace. */
  patches?: { from: string; count: number; bytes: number; replacedBytes: number };
}

export interface PublishResult {
  name: string;
  version: string;
  path: string;
  alreadyPublished: boolean;
  images: ImageSummary[];
}

async function fileRef(path: string, name: string): Promise<FileRef> {
  return { path: name, size: (await stat(path)).size, sha256: (await sha256File(path)).toString('hex') };
}

async function readExistingRecord(path: string): Promise<string | null> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
}

/** The published release to make patches from: the one named, or the last one published. */
async function previousRelease(
  repoDir: string,
  name: string,
  version: string,
  deltaFrom: string | false | undefined,
): Promise<{ record: ReleaseRecord; dir: string } | null> {
  if (deltaFrom === false) return null;
  const releasesDir = join(repoDir, releaseDir(name, version), '..');
  const versions = deltaFrom !== undefined ? [deltaFrom] : await readdir(releasesDir).catch(() => [] as string[]);
  let best: { record: ReleaseRecord; dir: string } | null = null;
  for (const v of versions) {
    if (v.startsWith('.') || v === version) continue;
    const dir = join(repoDir, releaseDir(name, v));
    const text = await readExistingRecord(join(dir, RELEASE_RECORD));
    if (text === null) {
      if (deltaFrom !== undefined)
        throw new CairnError(
          `${deltaFrom} is not published in ${repoDir}`,
          'name a published version with --delta-from, or leave it out for the last one published',
        );
      continue;
    }
    const record = await readSignedJsonUnverified(text, join(dir, RELEASE_RECORD), validateReleaseRecord, RELEASE_RECORD_KIND);
    if (!best || record.published > best.record.published) best = { record, dir };
  }
  return best;
}

export async function publishRelease(opts: PublishOptions): Promise<PublishResult> {
  const { manifest, text: manifestText } = await readManifest(opts.buildDir);
  const files = RELEASE_IMAGES.map((key) => ({ key, file: imageFile(key, manifest.name, manifest.version) }));
  for (const { file: needed } of files) {
    if (!manifest.artifacts[needed])
      throw new CairnError(`${opts.buildDir}: the manifest lists no ${needed}`, 'build the whole disk (cairn build without --stage)');
  }
  // Only what goes into the release is checked: hashing disk.raw too (gigabytes) would buy nothing.
  const mismatched = await mismatchedArtifacts(
    opts.buildDir,
    manifest,
    files.map((f) => f.file),
  );
  if (mismatched.length > 0) {
    throw new CairnError(`${opts.buildDir}: ${mismatched.join(', ')} do not match manifest.json`, 'rebuild; a release is published only from an intact build');
  }
  const relDir = releaseDir(manifest.name, manifest.version);
  const finalDir = join(opts.repoDir, relDir);
  const manifestSha = (await sha256File(join(opts.buildDir, MANIFEST))).toString('hex');
  const existing = await readExistingRecord(join(finalDir, RELEASE_RECORD));
  if (existing !== null) {
    // Releases are immutable: the same build again is a no-op, another build is an error.
    const record = await readSignedJsonUnverified(existing, join(finalDir, RELEASE_RECORD), validateReleaseRecord, RELEASE_RECORD_KIND);
    if (record.manifest.sha256 === manifestSha) {
      return { name: manifest.name, version: manifest.version, path: relDir, alreadyPublished: true, images: [] };
    }
    throw new CairnError(`${relDir} is already published from a different build`, 'releases are immutable: bump the recipe version and build again');
  }

  const store = new ChunkStore(join(opts.repoDir, CHUNKS_DIR), { quality: opts.quality });
  const previous = await previousRelease(opts.repoDir, manifest.name, manifest.version, opts.deltaFrom);
  await mkdir(join(opts.repoDir, relDir, '..'), { recursive: true });
  const staging = join(opts.repoDir, relDir, '..', `.${manifest.version}.${randomBytes(4).toString('hex')}.tmp`);
  await mkdir(staging);
  try {
    const images: Partial<Record<ReleaseImage, ImageRef>> = {};
    const summaries: ImageSummary[] = [];
    for (const { key, file } of files) {
      const imagePath = join(opts.buildDir, file);
      const summary: ImageSummary = { file, size: manifest.artifacts[file]!.size, chunks: 0, addedChunks: 0, addedBytes: 0, storedBytes: 0 };
      opts.onImage?.(file, summary.size);
      const index: ChunkIndex = await buildChunkIndex(imagePath, store, undefined, (r) => {
        summary.chunks++;
        summary.storedBytes += r.storedSize;
        if (r.added) {
          summary.addedChunks++;
          summary.addedBytes += r.storedSize;
        }
      });
      if (index.sha256 !== manifest.artifacts[file]!.sha256) throw new CairnError(`${imagePath} changed while it was being published`);
      const indexName = `${file}.chunks${PACKED_JSON}`;
      await writeFileAtomic(join(staging, indexName), packJson(index));
      images[key] = { index: await fileRef(join(staging, indexName), indexName), size: index.size, sha256: index.sha256 };
      if (previous && PATCHED_IMAGES.includes(key)) {
        const oldRef = previous.record.images[key];
        const oldIndex = validateChunkIndex(unpackJson(await readFile(join(previous.dir, oldRef.index.path)), join(previous.dir, oldRef.index.path)));
        const set = await makePatchSet({
          oldIndex,
          oldVersion: previous.record.version,
          oldChunks: store,
          newIndex: index,
          readNew: (offset, length) => readRange(imagePath, offset, length),
          storePatch: patchWriter(opts.repoDir),
        });
        const setName = `${file}.patches${PACKED_JSON}`;
        await writeFileAtomic(join(staging, setName), packJson(set));
        images[key]!.patches = await fileRef(join(staging, setName), setName);
        const replaced = new Map(set.patches.flatMap((p) => index.chunks.slice(p.first, p.first + p.count).map((c) => [c.sha256, c.storedSize] as const)));
        summary.patches = {
          from: previous.record.version,
          count: set.patches.length,
          bytes: set.patches.reduce((s, p) => s + p.size, 0),
          replacedBytes: [...replaced.values()].reduce((s, n) => s + n, 0),
        };
      }
      summaries.push(summary);
    }
    await writeFileAtomic(join(staging, MANIFEST), manifestText);
    const signature = await readFile(join(opts.buildDir, SIGNATURE)).catch(() => null);
    if (signature) await writeFileAtomic(join(staging, SIGNATURE), signature);
    const record: ReleaseRecord = {
      format: FORMATS.release,
      name: manifest.name,
      version: manifest.version,
      architecture: manifest.architecture,
      published: (opts.now ?? new Date()).toISOString(),
      rootHash: manifest.usr.rootHash,
      manifest: { path: MANIFEST, size: manifestText.length, sha256: manifestSha },
      images: images as Record<ReleaseImage, ImageRef>,
    };
    await writeFileAtomic(join(staging, RELEASE_RECORD), await signJson(record, [opts.key], opts.now));
    await rename(staging, finalDir);
    return { name: manifest.name, version: manifest.version, path: relDir, alreadyPublished: false, images: summaries };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

export function formatPublishResult(result: PublishResult, seconds: number): string {
  if (result.alreadyPublished) return `${result.name} ${result.version} is already published from this build (${result.path}); nothing changed\n`;
  const lines = result.images.map((i) => {
    const patches = i.patches
      ? `; ${i.patches.count} patches from ${i.patches.from}: ${mib(i.patches.bytes)} instead of ${mib(i.patches.replacedBytes)} of chunks`
      : '';
    return `${i.file.padEnd(10)} ${mib(i.size)} in ${i.chunks} chunks; new: ${i.addedChunks} chunks, ${mib(i.addedBytes)} compressed (all chunks: ${mib(i.storedBytes)})${patches}`;
  });
  lines.push(`published ${result.name} ${result.version} as ${result.path} in ${seconds.toFixed(1)} s`);
  return lines.join('\n') + '\n';
}
