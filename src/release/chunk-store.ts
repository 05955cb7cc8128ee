// A content-addressed store of compressed chunks: `<dir>/<first 2 hex>/<sha256>.br`, each file
// the Brotli-compressed bytes of the chunk whose SHA-256 (of the uncompressed bytes) names it.
// The same layout serves as the update repository's chunk directory and as a host's local cache.
//
// Why Brotli, and why quality 5. The host must decompress with what Node has (node:zlib: gzip,
// deflate, brotli; no zstd). Measured with node:zlib on Node 20.20 (2 cores), on every 10th
// chunk (default parameters, up to 80 chunks) of the images in images/ — compressed size as a
// share of the raw size, and single-thread speed in MB/s of raw data:
//
//   data                           gzip-6         gzip-9         brotli-5       brotli-9       brotli-11
//   container-host usr.erofs      84.3% 30/221   84.2% 29/218   82.3% 34/145   81.7% 3.4/160  78.6% 0.2/122
//   tiny usr.erofs                88.5% 29/194   88.4% 27/258   87.5% 40/158   87.2% 3.0/169  85.0% 0.3/160
//   rootfs.tar (first 60 MB)      72.7% 33/307   72.6% 12/276   70.8% 46/177   70.7% 4.0/252  69.4% 0.4/180
//   (ratio, compress MB/s / decompress MB/s; Brotli with lgwin 18 = the largest chunk)
//
// The usr images are already compressed by EROFS, so a chunk shrinks only 12-18%. Brotli 5 beats
// gzip at every level on both size and compression speed, and decompresses at 145+ MB/s, faster
// than a host downloads. Brotli 11 saves about 4 more points but compresses at 0.2-0.4 MB/s: a
// first publish of the 163 MB container-host image would take ~10 CPU-minutes instead of ~5 s.
// Quality 9 gains half a point for 10x the time. So the default is quality 5; a publisher may
// pass another quality (the host decompresses any), e.g. 11 for a release that will be
// downloaded by many hosts and published once.
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants as zc } from 'node:zlib';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';

const compress = promisify(brotliCompress);
const decompress = promisify(brotliDecompress);

export const DEFAULT_CHUNK_QUALITY = 5;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface PutResult {
  sha256: string;
  /** Size of the compressed file in the store. */
  storedSize: number;
  /** False when the store already had the chunk (nothing was written). */
  added: boolean;
}

/** Anything chunks can be read from by hash (the store, or a host's running slot). */
export interface ChunkSource {
  get(sha256: string, expectedSize: number): Promise<Buffer>;
}

/**
 * The largest stored (compressed) size a chunk of `size` bytes may have. Brotli's worst case on
 * incompressible data is a few bytes per metablock; this bound is generous and still stops a
 * file (or a download) that is far larger than its chunk could need.
 */
export function maxStoredSize(size: number): number {
  return size + (size >> 6) + 1024;
}

export function isSha256Hex(s: unknown): s is string {
  return typeof s === 'string' && SHA256_HEX.test(s);
}

/**
 * Decompresses a stored chunk into no more than `expectedSize` bytes and checks its size and
 * SHA-256; `where` names its source (a file, a URL) in errors.
 */
export async function decodeChunk(packed: Buffer, sha256: string, expectedSize: number, where: string, hint: string): Promise<Buffer> {
  if (packed.length > maxStoredSize(expectedSize)) {
    throw new CairnError(`chunk ${sha256}: ${where} is ${packed.length} bytes, too large for a ${expectedSize}-byte chunk`, hint);
  }
  let data: Buffer;
  try {
    // maxOutputLength must be ≥ 1; an empty chunk never exists, but stay safe.
    data = await decompress(packed, { maxOutputLength: Math.max(1, expectedSize) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ERR_BUFFER_TOO_LARGE' ? `decompresses to more than the expected ${expectedSize} bytes` : `cannot be decompressed (${e.message})`;
    throw new CairnError(`chunk ${sha256}: ${where} ${why}`, hint);
  }
  if (data.length !== expectedSize) {
    throw new CairnError(`chunk ${sha256}: ${where} decompresses to ${data.length} bytes, expected ${expectedSize}`, hint);
  }
  const actual = createHash('sha256').update(data).digest('hex');
  if (actual !== sha256) throw new CairnError(`chunk ${sha256}: ${where} holds data with SHA-256 ${actual}`, hint);
  return data;
}

export class ChunkStore implements ChunkSource {
  private readonly pending = new Map<string, Promise<PutResult>>();
  private readonly quality: number;

  constructor(
    readonly dir: string,
    options: { quality?: number } = {},
  ) {
    const q = options.quality ?? DEFAULT_CHUNK_QUALITY;
    if (!Number.isInteger(q) || q < 0 || q > 11) throw new CairnError(`brotli quality must be an integer 0..11, got ${q}`);
    this.quality = q;
  }

  /** Where the chunk with this hash is (or would be) stored. */
  pathOf(sha256: string): string {
    if (!isSha256Hex(sha256)) throw new CairnError(`not a SHA-256 chunk name: ${JSON.stringify(sha256)}`);
    return join(this.dir, sha256.slice(0, 2), `${sha256}.br`);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(sha256))).isFile();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Stores a chunk under its SHA-256 unless it is there already. Concurrent puts of one chunk write it once. */
  put(chunk: Buffer, sha256?: string): Promise<PutResult> {
    const sha = sha256 ?? createHash('sha256').update(chunk).digest('hex');
    const inFlight = this.pending.get(sha);
    if (inFlight) return inFlight.then((r) => ({ ...r, added: false }));
    const p = this.putNew(chunk, sha).finally(() => this.pending.delete(sha));
    this.pending.set(sha, p);
    return p;
  }

  private async putNew(chunk: Buffer, sha: string): Promise<PutResult> {
    const path = this.pathOf(sha);
    try {
      const st = await stat(path);
      return { sha256: sha, storedSize: st.size, added: false };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const packed = await compress(chunk, {
      params: {
        [zc.BROTLI_PARAM_QUALITY]: this.quality,
        // A window as large as the chunk (no larger: it sets the decoder's memory on the host).
        [zc.BROTLI_PARAM_LGWIN]: Math.min(24, Math.max(10, Math.ceil(Math.log2(Math.max(1, chunk.length))))),
        [zc.BROTLI_PARAM_SIZE_HINT]: chunk.length,
      },
    });
    await mkdir(join(this.dir, sha.slice(0, 2)), { recursive: true });
    await writeFileAtomic(path, packed);
    return { sha256: sha, storedSize: packed.length, added: true };
  }

  /**
   * Reads a chunk: decompresses no more than `expectedSize` bytes, and checks the size and the
   * SHA-256. Throws a CairnError for a missing, oversized, undecodable or corrupted chunk.
   */
  async get(sha256: string, expectedSize: number): Promise<Buffer> {
    const path = this.pathOf(sha256);
    if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) {
      throw new CairnError(`chunk ${sha256}: bad expected size ${expectedSize}`);
    }
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CairnError(`chunk ${sha256} is not in the store ${this.dir}`);
      throw err;
    }
    if (st.size > maxStoredSize(expectedSize)) {
      throw new CairnError(`chunk ${sha256}: stored file ${path} is ${st.size} bytes, too large for a ${expectedSize}-byte chunk`);
    }
    return decodeChunk(await readFile(path), sha256, expectedSize, path, 'the store is corrupted; delete the file and publish again');
  }
}
