// The chunk index of a slot image: the image's content-defined chunks in order, each with its
// offset, size, SHA-256 and the size of its compressed file in the chunk store. A host rebuilds
// the image from the index by taking each chunk from wherever it has it (its running slot, the
// store) and checks the whole-image SHA-256 at the end. The index is covered by the release
// manifest's signature; validateChunkIndex is what stands between an index from the network and
// the code that trusts its numbers.
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { CairnError } from '../errors.js';
import { writeAt } from '../file-range.js';
import { writeAtomic } from '../fs-atomic.js';
import { ChunkParams, DEFAULT_CHUNK_PARAMS, chunkFile, validateChunkParams } from './chunker.js';
import { ChunkSource, ChunkStore, PutResult, isSha256Hex, maxStoredSize } from './chunk-store.js';
import { FORMATS } from '../document/formats.js';

export interface ChunkIndexEntry {
  offset: number;
  size: number;
  sha256: string;
  /** Size of the chunk's compressed file in the store (what a host downloads for it). */
  storedSize: number;
}

export interface ChunkIndex {
  format: typeof FORMATS.chunks;
  /** The image's file name (usr.erofs, usr.verity). */
  image: string;
  size: number;
  sha256: string;
  params: ChunkParams;
  chunks: ChunkIndexEntry[];
}

/** How many chunks are compressed at once while building an index (node's thread pool has 4). */
const PUT_CONCURRENCY = 4;

/**
 * Chunks an image, stores every chunk (a chunk the store has is not written again) and returns
 * its index; the whole-image SHA-256 is computed in the same pass. `onPut` sees each chunk's
 * store result, in order (e.g. to count what a publish added).
 */
export async function buildChunkIndex(
  imagePath: string,
  store: ChunkStore,
  params: ChunkParams = DEFAULT_CHUNK_PARAMS,
  onPut?: (result: PutResult) => void,
): Promise<ChunkIndex> {
  const checked = validateChunkParams(params);
  const st = await stat(imagePath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new CairnError(`image ${imagePath} does not exist`);
    throw err;
  });
  if (!st.isFile()) throw new CairnError(`image ${imagePath} is not a regular file`);
  const whole = createHash('sha256');
  const entries: ChunkIndexEntry[] = [];
  const queue: { offset: number; size: number; put: Promise<PutResult> }[] = [];
  let size = 0;
  const drainOne = async () => {
    const { offset, size: chunkSize, put } = queue.shift()!;
    const r = await put;
    onPut?.(r);
    entries.push({ offset, size: chunkSize, sha256: r.sha256, storedSize: r.storedSize });
  };
  try {
    for await (const chunk of chunkFile(imagePath, checked)) {
      whole.update(chunk.data);
      size += chunk.size;
      const put = store.put(chunk.data, chunk.sha256);
      put.catch(() => {}); // awaited in order below; this only keeps a later failure from being "unhandled" meanwhile
      queue.push({ offset: chunk.offset, size: chunk.size, put });
      if (queue.length >= PUT_CONCURRENCY) await drainOne();
    }
    while (queue.length > 0) await drainOne();
  } catch (err) {
    await Promise.allSettled(queue.map((q) => q.put));
    throw err;
  }
  return {
    format: FORMATS.chunks,
    image: basename(imagePath),
    size,
    sha256: whole.digest('hex'),
    params: { ...checked },
    chunks: entries,
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(where: string, obj: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of allowed) {
    if (!(key in obj)) throw new CairnError(`chunk index: ${where} lacks "${key}"`);
  }
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw new CairnError(`chunk index: ${where} has an unknown field "${key}"`);
  }
}

function checkCount(where: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new CairnError(`chunk index: ${where} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Checks that `data` (parsed JSON, from anywhere) is a well-formed chunk index: the chunks tile
 * the image exactly (contiguous from offset 0, no gaps or overlaps, summing to its size), every
 * size is within the parameters (only the last chunk may be under min), every hash is
 * lower-case hex SHA-256, every stored size is plausible for its chunk. Throws a CairnError
 * naming the first problem; returns the index typed.
 */
export function validateChunkIndex(data: unknown): ChunkIndex {
  if (!isPlainObject(data)) throw new CairnError('chunk index: not a JSON object');
  checkKeys('the index', data, ['format', 'image', 'size', 'sha256', 'params', 'chunks']);
  if (data.format !== FORMATS.chunks) {
    throw new CairnError(`chunk index: format is ${JSON.stringify(data.format)}, expected "${FORMATS.chunks}"`, 'a newer cairn may be needed to read it');
  }
  if (typeof data.image !== 'string' || !/^[A-Za-z0-9._+-]+$/.test(data.image) || data.image === '.' || data.image === '..') {
    throw new CairnError(`chunk index: image must be a plain file name, got ${JSON.stringify(data.image)}`);
  }
  const size = checkCount('size', data.size, 0);
  if (!isSha256Hex(data.sha256)) throw new CairnError(`chunk index: sha256 is not a lower-case hex SHA-256: ${JSON.stringify(data.sha256)}`);
  let params: ChunkParams;
  try {
    params = validateChunkParams(data.params);
  } catch (err) {
    throw new CairnError(`chunk index: ${(err as Error).message}`);
  }
  if (!Array.isArray(data.chunks)) throw new CairnError('chunk index: chunks must be an array');
  const chunks: ChunkIndexEntry[] = [];
  let expectedOffset = 0;
  const n = data.chunks.length;
  for (let i = 0; i < n; i++) {
    const c: unknown = data.chunks[i];
    const where = `chunk ${i}`;
    if (!isPlainObject(c)) throw new CairnError(`chunk index: ${where} is not an object`);
    checkKeys(where, c, ['offset', 'size', 'sha256', 'storedSize']);
    const offset = checkCount(`${where} offset`, c.offset, 0);
    const chunkSize = checkCount(`${where} size`, c.size, 1);
    if (offset < expectedOffset) throw new CairnError(`chunk index: ${where} at offset ${offset} overlaps the previous chunk, which ends at ${expectedOffset}`);
    if (offset > expectedOffset) throw new CairnError(`chunk index: gap before ${where}: it starts at ${offset}, the previous chunk ends at ${expectedOffset}`);
    if (chunkSize > params.max) throw new CairnError(`chunk index: ${where} is ${chunkSize} bytes, more than the maximum ${params.max}`);
    if (chunkSize < params.min && i !== n - 1)
      throw new CairnError(`chunk index: ${where} is ${chunkSize} bytes, less than the minimum ${params.min}, and is not the last chunk`);
    if (!isSha256Hex(c.sha256)) throw new CairnError(`chunk index: ${where} sha256 is not a lower-case hex SHA-256: ${JSON.stringify(c.sha256)}`);
    const storedSize = checkCount(`${where} storedSize`, c.storedSize, 1);
    if (storedSize > maxStoredSize(chunkSize))
      throw new CairnError(`chunk index: ${where} storedSize ${storedSize} is too large for a ${chunkSize}-byte chunk`);
    expectedOffset = offset + chunkSize;
    if (expectedOffset > size) throw new CairnError(`chunk index: ${where} ends at ${expectedOffset}, past the image size ${size}`);
    chunks.push({ offset, size: chunkSize, sha256: c.sha256, storedSize });
  }
  if (expectedOffset !== size) throw new CairnError(`chunk index: the chunks cover ${expectedOffset} bytes, the image is ${size}`);
  return { format: FORMATS.chunks, image: data.image, size, sha256: data.sha256, params, chunks };
}

/**
 * Writes the image described by `index` to `outPath` from chunks in `source`, checking each
 * chunk (the source does) and the whole image's size and SHA-256. The file appears at `outPath`
 * only when complete and correct; on any failure nothing is left behind.
 */
export async function reassemble(index: ChunkIndex, source: ChunkSource, outPath: string): Promise<void> {
  const checked = validateChunkIndex(index);
  const whole = createHash('sha256');
  let written = 0;
  await writeAtomic(outPath, async (handle) => {
    for (const c of checked.chunks) {
      const data = await source.get(c.sha256, c.size);
      if (data.length !== c.size) throw new CairnError(`chunk ${c.sha256}: got ${data.length} bytes, expected ${c.size}`);
      whole.update(data);
      await writeAt(handle, data, c.offset);
      written += data.length;
    }
    if (written !== checked.size) throw new CairnError(`reassembled ${written} bytes of ${checked.image}, expected ${checked.size}`);
    const actual = whole.digest('hex');
    if (actual !== checked.sha256) {
      throw new CairnError(`reassembled ${checked.image} has SHA-256 ${actual}, the index says ${checked.sha256}`);
    }
  });
}
