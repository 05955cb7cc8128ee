// What a host running one build downloads to install another (`cairn delta plan`): for each
// release image, the chunks its own slot holds, those patches make from them, and the rest.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpackJson } from '../document/json-document.js';
import { CairnError } from '../errors.js';
import { readManifest } from '../pipeline/manifest.js';
import { buildChunkIndex, validateChunkIndex, type ChunkIndex } from './chunk-index.js';
import { ChunkStore } from './chunk-store.js';
import { indexLocal, planDelta, type DeltaPlan, type LocalChunks } from './delta-plan.js';
import { checkPatchSet, type PatchSet } from './patch-set.js';
import { imageFile, RELEASE_IMAGES, RELEASE_RECORD_KIND, validateReleaseRecord, type ReleaseImage } from './release-record.js';
import { RELEASE_RECORD } from './repository-layout.js';
import { readSignedJsonUnverified } from './signed-json.js';

export interface DeltaReport {
  images: (DeltaPlan & { computedOnHost: boolean })[];
  total: { downloadBytes: number; fullBytes: number; imageBytes: number };
}

const isFile = (path: string): Promise<boolean> =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );

/** A build folder's release images, by path. */
async function buildImageFiles(dir: string): Promise<string[]> {
  const { manifest } = await readManifest(dir);
  const files = RELEASE_IMAGES.map((key) => join(dir, imageFile(key, manifest.name, manifest.version)));
  for (const path of files) {
    if (!(await isFile(path))) throw new CairnError(`${dir}: no ${path}`, 'point at a complete build folder');
  }
  return files;
}

/** The new side's chunk indexes (and patch sets): a published release folder's, or made from a build folder's images. */
async function newIndexes(dir: string): Promise<{ key: ReleaseImage; index: ChunkIndex; patches?: PatchSet }[]> {
  const recordPath = join(dir, RELEASE_RECORD);
  if (await isFile(recordPath)) {
    const record = await readSignedJsonUnverified(await readFile(recordPath, 'utf8'), recordPath, validateReleaseRecord, RELEASE_RECORD_KIND);
    return Promise.all(
      RELEASE_IMAGES.map(async (key) => {
        const indexFile = join(dir, record.images[key].index.path);
        const index = validateChunkIndex(unpackJson(await readFile(indexFile), indexFile));
        const ref = record.images[key].patches;
        const patchFile = ref && join(dir, ref.path);
        return { key, index, patches: patchFile ? checkPatchSet(unpackJson(await readFile(patchFile), patchFile), index, patchFile) : undefined };
      }),
    );
  }
  // A build folder: compress its chunks into a scratch store, only to learn their sizes.
  const scratch = await mkdtemp(join(tmpdir(), 'cairn-delta-'));
  try {
    const store = new ChunkStore(scratch);
    const files = await buildImageFiles(dir);
    return await Promise.all(files.map(async (path, n) => ({ key: RELEASE_IMAGES[n]!, index: await buildChunkIndex(path, store) })));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** `oldDir`: the build the host runs; `newDir`: a published release folder or a build folder. */
export async function deltaReport(oldDir: string, newDir: string): Promise<DeltaReport> {
  const old = await buildImageFiles(oldDir);
  const indexes = await newIndexes(newDir);
  const images: DeltaReport['images'] = [];
  // Every old image may hold chunks of every new one; chunk them once per parameter set.
  const local = new Map<string, Promise<LocalChunks>>();
  for (const { key: image, index, patches } of indexes) {
    const key = JSON.stringify(index.params);
    if (!local.has(key))
      local.set(
        key,
        indexLocal(
          old.map((path) => ({ path })),
          index.params,
        ),
      );
    // The agent computes the verity tree from the usr image it wrote; it downloads the tree
    // only when that comes out different (it logs verity-download then).
    images.push({ ...planDelta(index, await local.get(key)!, patches), computedOnHost: image === 'verity' });
  }
  const total = {
    downloadBytes: images.reduce((s, p) => s + (p.computedOnHost ? 0 : p.totals.downloadBytes), 0),
    fullBytes: images.reduce((s, p) => s + p.totals.fullBytes, 0),
    imageBytes: images.reduce((s, p) => s + p.totals.imageBytes, 0),
  };
  return { images, total };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(2)} MiB`;

/** The JSON form `cairn delta plan --json` prints. */
export function deltaReportJson({ images, total }: DeltaReport): object {
  return { images: images.map((p) => ({ image: p.image, computedOnHost: p.computedOnHost, ...p.totals, download: p.download, patches: p.patches })), total };
}

export function formatDeltaReport({ images, total }: DeltaReport): string {
  const lines: string[] = [];
  for (const p of images) {
    const t = p.totals;
    if (p.computedOnHost) {
      lines.push(`${p.image.padEnd(10)} computed on the host from usr (${mib(t.imageBytes)}; downloading it would be ${mib(t.downloadBytes)})`);
      continue;
    }
    lines.push(
      `${p.image.padEnd(10)} ${t.chunks} chunks (${mib(t.imageBytes)}): reuse ${t.reusedChunks} (${mib(t.reusedBytes)}), ` +
        (t.patchedChunks > 0 ? `patch ${t.patchedChunks} (${mib(t.patchedBytes)}) from ${p.patches.length} patches of ${mib(t.patchBytes)}, ` : '') +
        `download ${mib(t.downloadBytes)} in all, of ${mib(t.fullBytes)} compressed for the whole image`,
    );
  }
  const share = total.fullBytes > 0 ? ((100 * total.downloadBytes) / total.fullBytes).toFixed(1) : '0';
  lines.push(`download ${mib(total.downloadBytes)}, ${share}% of the full compressed ${mib(total.fullBytes)}`);
  return lines.join('\n') + '\n';
}
