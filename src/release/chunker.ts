// Content-defined chunking (FastCDC-style) of slot images, so that releases that differ in a few
// files share most of their chunks and a host downloads only the chunks it does not have.
//
// The algorithm (Xia et al., "FastCDC", USENIX ATC 2016), as cairn does it:
// - Gear rolling hash: h = (h << 1) + GEAR[byte], in 32-bit arithmetic. Each shift pushes old
//   bytes out of the top, so bit k of h depends only on the last k+1 bytes: the top bits are a
//   hash of the last 32 bytes, and a boundary depends only on the bytes just before it. That is
//   what makes boundaries stable: an edit moves the boundaries near it and nothing else.
// - A boundary is where (h & mask) == 0, with masks taken from the top bits of h (the bits with
//   the longest window). No boundary is looked for in the first `min` bytes of a chunk.
// - Normalized chunking (level 2): up to `avg` bytes the stricter mask (log2(avg) + 2 bits) is
//   used, after it the looser one (log2(avg) - 2 bits); a chunk is cut at `max` if no boundary
//   was found. This pulls chunk sizes toward `avg` (fewer tiny and giant chunks than plain CDC).
// - The gear table is fixed (it is part of the format: other tables give other boundaries):
//   GEAR[i] = the first 4 bytes, big-endian, of SHA-256("cairn-gear/1:" + i) for i = 0..255.
//
// The result depends only on the bytes and the parameters, never on how the input was split into
// reads: a chunk is cut only when `max` bytes past its start are buffered (or at end of input).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { CairnError } from '../errors.js';

export interface ChunkParams {
  /** No chunk is smaller than this, except the last one of the input. */
  min: number;
  /** The target (normalized) chunk size; rounded to a power of two for the masks. */
  avg: number;
  /** No chunk is larger than this. */
  max: number;
}

export interface Chunk {
  /** Where the chunk starts in the input. */
  offset: number;
  size: number;
  /** Hex SHA-256 of the chunk's bytes. */
  sha256: string;
  /** The chunk's bytes (a view of a buffer the chunker never writes to again). */
  data: Buffer;
}

export const DEFAULT_CHUNK_PARAMS: Readonly<ChunkParams> = Object.freeze({
  min: 16 * 1024,
  avg: 64 * 1024,
  max: 256 * 1024,
});

/** Chunk sizes above this are refused: a chunk is held in memory whole, on the host too. */
export const MAX_CHUNK_SIZE_LIMIT = 64 * 1024 * 1024;

export const GEAR_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`cairn-gear/1:${i}`).digest().readUInt32BE(0);
  }
  return table;
})();
// The same table as Int32 values, for the inner loop's int32 arithmetic.
const GEAR = new Int32Array(GEAR_TABLE.buffer);

/** Checks chunking parameters; throws a CairnError saying what is wrong. Returns them. */
export function validateChunkParams(params: unknown): ChunkParams {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new CairnError('chunk parameters must be an object with min, avg and max');
  }
  const p = params as Record<string, unknown>;
  for (const key of Object.keys(p)) {
    if (key !== 'min' && key !== 'avg' && key !== 'max') throw new CairnError(`chunk parameters: unknown field "${key}"`);
  }
  for (const key of ['min', 'avg', 'max'] as const) {
    const v = p[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new CairnError(`chunk parameters: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  const { min, avg, max } = p as unknown as ChunkParams;
  if (min < 64) throw new CairnError(`chunk parameters: min must be at least 64 bytes, got ${min}`);
  if (!(min < avg && avg < max)) {
    throw new CairnError(`chunk parameters must satisfy min < avg < max, got min ${min}, avg ${avg}, max ${max}`);
  }
  if (max > MAX_CHUNK_SIZE_LIMIT) {
    throw new CairnError(`chunk parameters: max must be at most ${MAX_CHUNK_SIZE_LIMIT} bytes, got ${max}`);
  }
  return { min, avg, max };
}

/** A mask of the top `bits` bits of a 32-bit word, as an int32. */
function topMask(bits: number): number {
  const b = Math.max(1, Math.min(31, bits));
  return (0xffffffff << (32 - b)) | 0;
}

interface Cutter {
  min: number;
  avg: number;
  max: number;
  maskS: number;
  maskL: number;
}

function cutter(params: ChunkParams): Cutter {
  const bits = Math.round(Math.log2(params.avg));
  return { ...params, maskS: topMask(bits + 2), maskL: topMask(bits - 2) };
}

/**
 * The length of the chunk that starts at `start` in `buf`, looking at no more than `end - start`
 * bytes. When fewer than `max` bytes are available the caller must be at the end of its input.
 */
function findCut(buf: Uint8Array, start: number, end: number, c: Cutter): number {
  const n = end - start;
  if (n <= c.min) return n;
  const limit = n < c.max ? n : c.max;
  const normal = n < c.avg ? n : c.avg;
  const maskS = c.maskS;
  const maskL = c.maskL;
  const gear = GEAR;
  let h = 0;
  let i = start + c.min;
  const normalEnd = start + normal;
  const limitEnd = start + limit;
  for (; i < normalEnd; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & maskS) === 0) return i + 1 - start;
  }
  for (; i < limitEnd; i++) {
    h = ((h << 1) + gear[buf[i]!]!) | 0;
    if ((h & maskL) === 0) return i + 1 - start;
  }
  return limit;
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Splits a stream of bytes into content-defined chunks, in order. The chunks cover the input
 * exactly, without gaps; an empty input gives no chunks.
 */
export async function* chunkStream(source: AsyncIterable<Buffer | Uint8Array>, params: ChunkParams = DEFAULT_CHUNK_PARAMS): AsyncGenerator<Chunk> {
  const c = cutter(validateChunkParams(params));
  // Input not yet cut, as a list of pieces; they are joined only when `max` bytes are buffered,
  // so each byte is copied about once whatever the read size.
  let pieces: Buffer[] = [];
  let buffered = 0;
  let offset = 0;

  function* cutFrom(buf: Buffer, final: boolean): Generator<Chunk> {
    let pos = 0;
    while (pos < buf.length && (final || buf.length - pos >= c.max)) {
      const size = findCut(buf, pos, buf.length, c);
      const data = buf.subarray(pos, pos + size);
      yield { offset, size, sha256: sha256Hex(data), data };
      offset += size;
      pos += size;
    }
    const rest = buf.subarray(pos);
    pieces = rest.length > 0 ? [rest] : [];
    buffered = rest.length;
  }

  for await (const input of source) {
    if (input.length === 0) continue;
    const piece = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.length);
    pieces.push(piece);
    buffered += piece.length;
    if (buffered >= c.max) {
      // Copy: the source may reuse its buffers, and the chunks handed out must stay valid.
      yield* cutFrom(Buffer.concat(pieces, buffered), false);
    }
  }
  if (buffered > 0) yield* cutFrom(Buffer.concat(pieces, buffered), true);
}

/**
 * Chunks a file (see chunkStream), or `length` bytes of it from `offset` (a partition inside a
 * disk); chunk offsets are then relative to `offset`.
 */
export function chunkFile(path: string, params: ChunkParams = DEFAULT_CHUNK_PARAMS, length?: number, offset = 0): AsyncGenerator<Chunk> {
  const range = length === undefined ? { start: offset } : { start: offset, end: offset + length - 1 };
  return chunkStream(createReadStream(path, { highWaterMark: 1024 * 1024, ...range }) as AsyncIterable<Buffer>, params);
}
