// What a host must download to build a new slot image: every chunk of the new image's index that
// it cannot take from what it already has. What it has is found the same way the repository
// cut the images: by chunking its running slot with the index's parameters, so a chunk whose
// bytes did not change has the same boundaries and hash on both sides.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import type { ChunkIndex, ChunkIndexEntry } from './chunk-index.js';
import { chunkFile, type ChunkParams } from './chunker.js';
import type { ChunkSource } from './chunk-store.js';

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
  totals: {
    chunks: number;
    imageBytes: number;
    reusedChunks: number;
    reusedBytes: number;
    downloadChunks: number;
    /** Compressed bytes to transfer. */
    downloadBytes: number;
    /** The same chunks uncompressed. */
    downloadRawBytes: number;
    /** Compressed bytes of the whole image (a host with nothing). */
    fullBytes: number;
  };
}

export function planDelta(index: ChunkIndex, have: LocalChunks): DeltaPlan {
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
  const entries = [...download.values()];
  return {
    image: index.image,
    download: entries,
    totals: {
      chunks: index.chunks.length,
      imageBytes: index.size,
      reusedChunks,
      reusedBytes,
      downloadChunks: entries.length,
      downloadBytes: entries.reduce((s, c) => s + c.storedSize, 0),
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
    const file = await open(local.path, 'r');
    try {
      const buf = Buffer.alloc(expectedSize);
      const { bytesRead } = await file.read(buf, 0, expectedSize, local.offset);
      if (bytesRead !== expectedSize) throw new CairnError(`${local.path}: short read at ${local.offset}`);
      if (createHash('sha256').update(buf).digest('hex') !== sha256) throw new CairnError(`${local.path} changed at offset ${local.offset}: chunk ${sha256} is no longer there`);
      return buf;
    } finally {
      await file.close();
    }
  }
}

/** Takes each chunk from the first source that has it locally (`local`), else from `fallback`. */
export class DeltaSource implements ChunkSource {
  private readonly reader: LocalChunkSource;

  constructor(private readonly local: LocalChunks, private readonly fallback: ChunkSource) {
    this.reader = new LocalChunkSource(local);
  }

  get(sha256: string, expectedSize: number): Promise<Buffer> {
    const local = this.local.get(sha256);
    return local && local.size === expectedSize ? this.reader.get(sha256, expectedSize) : this.fallback.get(sha256, expectedSize);
  }
}
