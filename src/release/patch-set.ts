// Patches between consecutive releases of an image. Chunks alone cannot make a small delta of an
// EROFS image: one changed library renumbers the inodes after it, and thousands of few-byte edits
// land in a tenth of the chunks (docs/deltas.md). So a release also carries, per image, patches
// against the release published before it: each run of new chunks that the old image lacks is
// described (binary-patch.ts) against the old bytes between the same unchanged neighbours.
//
// `<image>.patches.json.br` lists them; the release record pins it by size and SHA-256, so its
// numbers are signed. Each patch lives in `patches/` under the SHA-256 of its file, and says which
// run of the new index it makes and which consecutive old chunks it needs: a host that has them
// (it runs the old release) downloads the patch instead of the run's chunks, and checks every
// chunk it makes against the index as it would a downloaded one.
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { makePatch, MAX_PATCH_SIDE } from './binary-patch.js';
import type { ChunkIndex, ChunkIndexEntry } from './chunk-index.js';
import type { ChunkSource } from './chunk-store.js';
import { checkJsonDocument } from '../document/json-document.js';
import { compileSchema } from '../document/schema.js';
import schema from './patch-set.schema.json' with { type: 'json' };
import { patchPath } from './repository-layout.js';
import { FORMATS } from '../document/formats.js';

export interface PatchEntry {
  /** The run of the new index this patch makes: chunks first .. first+count-1. */
  first: number;
  count: number;
  /** Consecutive chunks of the old image whose bytes, concatenated, the patch is made against. */
  base: string[];
  /** The patch file. */
  size: number;
  sha256: string;
}

export interface PatchSet {
  format: typeof FORMATS.patches;
  image: string;
  /** The release and image the patches start from. */
  from: { version: string; sha256: string };
  patches: PatchEntry[];
}

export const validatePatchSetSchema: ValidateFunction<PatchSet> = compileSchema<PatchSet>(schema);

/** New bytes per patch: long runs compress better, but a host holds a run and its base in memory. */
const MAX_RUN = 8 * 1024 * 1024;
const MAX_BASE = 16 * 1024 * 1024;
/** A patch is kept only when it saves at least this share of the run's chunk downloads. */
const WORTH = 0.8;

export interface MakePatchSetOptions {
  oldIndex: ChunkIndex;
  oldVersion: string;
  /** Reads old chunks (the repository's chunk store). */
  oldChunks: ChunkSource;
  newIndex: ChunkIndex;
  /** Reads new bytes (the build's image file). */
  readNew: (offset: number, length: number) => Promise<Buffer>;
  /** Writes a patch file under `patches/`; resolves when it is durable. */
  storePatch: (sha256: string, data: Buffer) => Promise<void>;
}

/** Old bytes a piece of a long run is patched against, beyond its own span at the same shift. */
const MARGIN = 1024 * 1024;

export interface PatchRun {
  first: number;
  count: number;
  base: ChunkIndexEntry[];
}

/**
 * Splits the chunks new in `newIndex` into runs (at most MAX_RUN bytes each). A run's base is the
 * old chunks between the same unchanged neighbours; a piece of a longer run gets the part of
 * that at the same distance from its start, with a margin for what grew or shrank before it.
 */
export function patchRuns(oldIndex: ChunkIndex, newIndex: ChunkIndex): PatchRun[] {
  const old = oldIndex.chunks;
  const oldAt = new Map<string, number>();
  old.forEach((c, i) => {
    if (!oldAt.has(c.sha256)) oldAt.set(c.sha256, i);
  });
  const n = newIndex.chunks;
  const runs: PatchRun[] = [];
  let i = 0;
  while (i < n.length) {
    if (oldAt.has(n[i]!.sha256)) {
      i++;
      continue;
    }
    let k = i;
    while (k < n.length && !oldAt.has(n[k]!.sha256)) k++;
    const before = i > 0 ? oldAt.get(n[i - 1]!.sha256)! : -1;
    const after = k < n.length ? oldAt.get(n[k]!.sha256)! : old.length;
    let oStart = before + 1 < old.length ? old[before + 1]!.offset : oldIndex.size;
    let oEnd = after < old.length ? old[after]!.offset : oldIndex.size;
    if (oEnd <= oStart) {
      // The neighbours swapped places: take the old bytes at the run's own offsets.
      oStart = n[i]!.offset;
      oEnd = n[k - 1]!.offset + n[k - 1]!.size;
    }
    const shift = oStart - n[i]!.offset;
    const whole = n[k - 1]!.offset + n[k - 1]!.size - n[i]!.offset <= MAX_RUN;
    let a = i;
    while (a < k) {
      let b = a + 1;
      let bytes = n[a]!.size;
      while (b < k && bytes + n[b]!.size <= MAX_RUN) bytes += n[b++]!.size;
      const lo = whole ? oStart : Math.max(oStart, n[a]!.offset + shift - MARGIN);
      const hi = whole ? oEnd : Math.min(oEnd, n[a]!.offset + bytes + shift + MARGIN);
      const base: ChunkIndexEntry[] = [];
      let baseBytes = 0;
      for (const c of old) {
        if (c.offset + c.size <= lo || c.offset >= hi) continue;
        // Too much old data for a host to hold: keep the part nearest the piece's start.
        if (baseBytes + c.size > MAX_BASE) break;
        base.push(c);
        baseBytes += c.size;
      }
      runs.push({ first: a, count: b - a, base });
      a = b;
    }
    i = k;
  }
  return runs;
}

async function concat(entries: ChunkIndexEntry[], source: ChunkSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of entries) parts.push(await source.get(e.sha256, e.size));
  return Buffer.concat(parts);
}

/** Makes the patches from the old image to the new one; runs where a patch saves little get none. */
export async function makePatchSet(o: MakePatchSetOptions): Promise<PatchSet> {
  if (o.oldIndex.params.avg !== o.newIndex.params.avg || o.oldIndex.params.min !== o.newIndex.params.min || o.oldIndex.params.max !== o.newIndex.params.max) {
    throw new CairnError(`${o.newIndex.image}: chunked with other parameters than ${o.oldVersion}'s, so no patches between them`);
  }
  const patches: PatchEntry[] = [];
  for (const run of patchRuns(o.oldIndex, o.newIndex)) {
    if (run.base.length === 0) continue;
    const chunks = o.newIndex.chunks.slice(run.first, run.first + run.count);
    const start = chunks[0]!.offset;
    const neu = await o.readNew(start, chunks.at(-1)!.offset + chunks.at(-1)!.size - start);
    const patch = await makePatch(await concat(run.base, o.oldChunks), neu);
    const downloads = new Map(chunks.map((c) => [c.sha256, c.storedSize]));
    if (patch.length >= WORTH * [...downloads.values()].reduce((s, n) => s + n, 0)) continue;
    const sha256 = createHash('sha256').update(patch).digest('hex');
    await o.storePatch(sha256, patch);
    patches.push({ first: run.first, count: run.count, base: run.base.map((c) => c.sha256), size: patch.length, sha256 });
  }
  return { format: FORMATS.patches, image: o.newIndex.image, from: { version: o.oldVersion, sha256: o.oldIndex.sha256 }, patches };
}

/** Checks a patch set from the network against the index it belongs to. */
export function checkPatchSet(data: unknown, index: ChunkIndex, where: string): PatchSet {
  const set = checkJsonDocument(data, where, validatePatchSetSchema, 'a cairn patch set');
  if (set.image !== index.image) throw new CairnError(`${where}: patches ${set.image}, the index is of ${index.image}`);
  let end = 0;
  for (const p of set.patches) {
    if (p.first < end || p.first + p.count > index.chunks.length)
      throw new CairnError(`${where}: a patch makes chunks ${p.first}..${p.first + p.count - 1}, outside the index or overlapping another`);
    end = p.first + p.count;
    const bytes = index.chunks.slice(p.first, end).reduce((s, c) => s + c.size, 0);
    if (bytes > MAX_PATCH_SIDE) throw new CairnError(`${where}: a patch makes ${bytes} bytes, at most ${MAX_PATCH_SIDE} are allowed`);
    // A patch larger than what it makes is never worth downloading: refuse it as endless data.
    if (p.size > bytes + 1024) throw new CairnError(`${where}: a ${p.size}-byte patch for ${bytes} bytes of chunks`);
  }
  return set;
}

/** A repository's patch directory as `storePatch` for makePatchSet. */
export function patchWriter(repoDir: string): (sha256: string, data: Buffer) => Promise<void> {
  return async (sha256, data) => {
    const path = join(repoDir, patchPath(sha256));
    if (
      await stat(path).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return;
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, data);
  };
}
