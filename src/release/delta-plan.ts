// What a host must download to build a new slot image: every chunk of the new image's index that
// it cannot take from what it already has. What it has is found the same way the repository
// cut the images: by chunking its running slot with the index's parameters, so a chunk whose
// bytes did not change has the same boundaries and hash on both sides.
import { createHash } from 'node:crypto';
import { CairnError } from '../errors.js';
import { readRange } from '../file-range.js';
import { applyPatch } from './binary-patch.js';
import type { ChunkIndex, ChunkIndexEntry } from './chunk-index.js';
import { chunkFile, type ChunkParams } from './chunker.js';
import type { ChunkSource } from './chunk-store.js';
import type { PatchEntry, PatchSet } from './patch-set.js';

/** Where a chunk can be read locally. */
export interface LocalChunk {
  path: string;
  offset: number;
  size: number;
}

export type LocalChunks = Map<string, LocalChunk>;

/** A file, or a region of one (a slot partition inside the boot disk). */
export interface LocalSource {
  path: string;
  offset?: number;
  length?: number;
}

/** Chunks local files or regions and records where each chunk is. */
export async function indexLocal(sources: LocalSource[], params: ChunkParams, into: LocalChunks = new Map()): Promise<LocalChunks> {
  for (const { path, offset = 0, length } of sources) {
    for await (const c of chunkFile(path, params, length, offset)) {
      if (!into.has(c.sha256)) into.set(c.sha256, { path, offset: offset + c.offset, size: c.size });
    }
  }
  return into;
}

export interface DeltaPlan {
  image: string;
  /** Chunks to download: each distinct hash once. */
  download: ChunkIndexEntry[];
  /** Patches to download instead of the chunks they make. */
  patches: PatchEntry[];
  totals: {
    chunks: number;
    imageBytes: number;
    reusedChunks: number;
    reusedBytes: number;
    downloadChunks: number;
    /** Chunks made from patches. */
    patchedChunks: number;
    patchedBytes: number;
    /** Bytes of the patches. */
    patchBytes: number;
    /** Bytes to transfer: compressed chunks plus patches. */
    downloadBytes: number;
    /** The same chunks uncompressed. */
    downloadRawBytes: number;
    /** Compressed bytes of the whole image (a host with nothing). */
    fullBytes: number;
  };
}

/**
 * The patches of `set` a host with `have` can apply (it has every base chunk) and that save it
 * bytes; the chunks they make move from `download` to `patched`.
 */
function usePatches(
  index: ChunkIndex,
  have: LocalChunks,
  download: Map<string, ChunkIndexEntry>,
  set: PatchSet | undefined,
): { patches: PatchEntry[]; patched: ChunkIndexEntry[] } {
  const patches: PatchEntry[] = [];
  const patched: ChunkIndexEntry[] = [];
  for (const p of set?.patches ?? []) {
    if (!p.base.every((b) => have.has(b))) continue;
    const replaces = new Map(
      index.chunks
        .slice(p.first, p.first + p.count)
        .filter((c) => download.has(c.sha256))
        .map((c) => [c.sha256, c]),
    );
    if (p.size >= [...replaces.values()].reduce((s, c) => s + c.storedSize, 0)) continue;
    for (const [sha, c] of replaces) {
      download.delete(sha);
      patched.push(c);
    }
    patches.push(p);
  }
  return { patches, patched };
}

export function planDelta(index: ChunkIndex, have: LocalChunks, patchSet?: PatchSet): DeltaPlan {
  const download = new Map<string, ChunkIndexEntry>();
  const full = new Map<string, number>();
  let reusedChunks = 0;
  let reusedBytes = 0;
  for (const c of index.chunks) {
    full.set(c.sha256, c.storedSize);
    const local = have.get(c.sha256);
    if (local && local.size === c.size) {
      reusedChunks++;
      reusedBytes += c.size;
    } else if (!download.has(c.sha256)) {
      download.set(c.sha256, c);
    }
  }
  const { patches, patched } = usePatches(index, have, download, patchSet);
  const entries = [...download.values()];
  const patchBytes = patches.reduce((s, p) => s + p.size, 0);
  return {
    image: index.image,
    download: entries,
    patches,
    totals: {
      chunks: index.chunks.length,
      imageBytes: index.size,
      reusedChunks,
      reusedBytes,
      downloadChunks: entries.length,
      patchedChunks: patched.length,
      patchedBytes: patched.reduce((s, c) => s + c.size, 0),
      patchBytes,
      downloadBytes: entries.reduce((s, c) => s + c.storedSize, 0) + patchBytes,
      downloadRawBytes: entries.reduce((s, c) => s + c.size, 0),
      fullBytes: [...full.values()].reduce((s, n) => s + n, 0),
    },
  };
}

/** Reads chunks from local files found by indexLocal, each checked against its hash (the file may have changed since). */
export class LocalChunkSource implements ChunkSource {
  constructor(private readonly chunks: LocalChunks) {}

  async get(sha256: string, expectedSize: number): Promise<Buffer> {
    const local = this.chunks.get(sha256);
    if (!local || local.size !== expectedSize) throw new CairnError(`chunk ${sha256} is not available locally`);
    const buf = await readRange(local.path, local.offset, expectedSize);
    if (createHash('sha256').update(buf).digest('hex') !== sha256)
      throw new CairnError(`${local.path} changed at offset ${local.offset}: chunk ${sha256} is no longer there`);
    return buf;
  }
}

export type ChunkOrigin = 'local' | 'patch' | 'remote';

export interface PatchSource {
  index: ChunkIndex;
  /** The patches to use (planDelta's choice). */
  patches: PatchEntry[];
  /** Downloads a patch file, checked against its entry's size and SHA-256. */
  fetch: (patch: PatchEntry) => Promise<Buffer>;
}

/**
 * Takes each chunk from the host's own files when it has it, else makes it from a patch over
 * chunks it has, else takes it from `fallback` (the repository). Every chunk made from a patch is
 * checked against its hash before it is handed out.
 */
export class DeltaSource implements ChunkSource {
  private readonly reader: LocalChunkSource;
  private readonly patchOf = new Map<string, PatchEntry>();
  private readonly made = new Map<PatchEntry, Promise<Map<string, Buffer>>>();
  /** Chunks of each made patch not handed out yet: once none are left, its bytes are let go. */
  private readonly pending = new Map<PatchEntry, Set<string>>();

  constructor(
    private readonly local: LocalChunks,
    private readonly fallback: ChunkSource,
    private readonly patches?: PatchSource,
  ) {
    this.reader = new LocalChunkSource(local);
    for (const p of patches?.patches ?? []) {
      for (const c of patches!.index.chunks.slice(p.first, p.first + p.count)) if (!this.patchOf.has(c.sha256)) this.patchOf.set(c.sha256, p);
    }
  }

  /** The chunk, where it came from, and the bytes downloaded for it (a patch counts once, on the first chunk it makes). */
  async fetch(entry: Pick<ChunkIndexEntry, 'sha256' | 'size' | 'storedSize'>): Promise<{ data: Buffer; origin: ChunkOrigin; bytes: number }> {
    const { sha256, size } = entry;
    const local = this.local.get(sha256);
    if (local && local.size === size) {
      try {
        return { data: await this.reader.get(sha256, size), origin: 'local', bytes: 0 };
      } catch {
        // The running slot changed under us? Make or download the chunk instead.
      }
    }
    const patch = this.patchOf.get(sha256);
    if (patch) {
      const fresh = !this.made.has(patch);
      if (fresh) {
        this.made.set(patch, this.makeFromPatch(patch));
        this.pending.set(patch, new Set(this.patches!.index.chunks.slice(patch.first, patch.first + patch.count).map((c) => c.sha256)));
      }
      const made = this.made.get(patch)!;
      const data = (
        await made.catch((err: unknown) => {
          this.made.delete(patch);
          throw err;
        })
      ).get(sha256)!;
      const left = this.pending.get(patch);
      left?.delete(sha256);
      if (left?.size === 0) {
        this.made.delete(patch);
        this.pending.delete(patch);
      }
      return { data, origin: 'patch', bytes: fresh ? patch.size : 0 };
    }
    return { data: await this.fallback.get(sha256, size), origin: 'remote', bytes: entry.storedSize };
  }

  async get(sha256: string, size: number): Promise<Buffer> {
    // Only the data is wanted: what it cost to download is not counted here.
    return (await this.fetch({ sha256, size, storedSize: 0 })).data;
  }

  private async makeFromPatch(patch: PatchEntry): Promise<Map<string, Buffer>> {
    const { index, fetch } = this.patches!;
    const base: Buffer[] = [];
    for (const sha of patch.base) base.push(await this.reader.get(sha, this.local.get(sha)?.size ?? 0));
    const where = `patch ${patch.sha256}`;
    const out = await applyPatch(Buffer.concat(base), await fetch(patch), where);
    const chunks = new Map<string, Buffer>();
    let at = 0;
    for (const c of index.chunks.slice(patch.first, patch.first + patch.count)) {
      const data = out.subarray(at, at + c.size);
      at += c.size;
      const actual = createHash('sha256').update(data).digest('hex');
      if (actual !== c.sha256)
        throw new CairnError(`${where} made chunk ${c.sha256} with SHA-256 ${actual}`, 'the repository or the running slot is corrupted');
      chunks.set(c.sha256, data);
    }
    if (at !== out.length) throw new CairnError(`${where} made ${out.length} bytes, its chunks are ${at}`);
    return chunks;
  }
}
