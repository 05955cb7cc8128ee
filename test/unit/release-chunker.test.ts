// Content-defined chunking: the fixed gear table, the chunks tiling the input within min/max,
// independence from read sizes, boundary stability under an insertion, and throughput (reported,
// not asserted).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { prngBytes } from '../fixtures/seeded-bytes.js';
import { Chunk, ChunkParams, DEFAULT_CHUNK_PARAMS, GEAR_TABLE, chunkFile, chunkStream, validateChunkParams } from '../../src/release/chunker.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Feeds `data` in reads of `readSize` bytes (each a fresh copy, as a file stream would). */
async function* reads(data: Buffer, readSize: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += readSize) yield Buffer.from(data.subarray(i, i + readSize));
}

async function collect(gen: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for await (const c of gen) out.push(c);
  return out;
}

const summary = (chunks: Chunk[]) => chunks.map((c) => `${c.offset}+${c.size}:${c.sha256}`);

let work: string;
let data8: Buffer;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-chunker-'));
  data8 = prngBytes(8 * MiB, 0xc0ffee);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function assertTiles(chunks: Chunk[], data: Buffer, params: ChunkParams): void {
  let offset = 0;
  chunks.forEach((c, i) => {
    assert.equal(c.offset, offset, `chunk ${i} offset`);
    assert.equal(c.size, c.data.length);
    assert.ok(c.size <= params.max, `chunk ${i} is ${c.size} > max ${params.max}`);
    if (i < chunks.length - 1) assert.ok(c.size >= params.min, `chunk ${i} is ${c.size} < min ${params.min}`);
    assert.ok(c.data.equals(data.subarray(offset, offset + c.size)), `chunk ${i} data`);
    assert.equal(c.sha256, createHash('sha256').update(c.data).digest('hex'));
    offset += c.size;
  });
  assert.equal(offset, data.length);
}

test('the gear table is SHA-256 of "cairn-gear/1:<i>", fixed as part of the format', () => {
  assert.equal(GEAR_TABLE.length, 256);
  for (const i of [0, 1, 127, 255]) {
    assert.equal(GEAR_TABLE[i], createHash('sha256').update(`cairn-gear/1:${i}`).digest().readUInt32BE(0));
  }
  assert.equal(new Set(GEAR_TABLE).size, 256, 'entries are distinct');
});

// The first chunk sizes and a digest of all (offset, size, sha256) of 2 MiB of xorshift32(42) data.
const PINNED_FIRST_SIZES = [78293, 85853, 77637];
const PINNED_DIGEST = '0289f72f0f556e8cd8a78d4562131266d286462ed338379b067b698730deab76';
test('boundaries of a fixed input are pinned (changing them changes the format)', async () => {
  const chunks = await collect(chunkStream(reads(prngBytes(2 * MiB, 42), MiB)));
  const digest = createHash('sha256').update(summary(chunks).join('\n')).digest('hex');
  assert.deepEqual(
    chunks.slice(0, 3).map((c) => c.size),
    PINNED_FIRST_SIZES,
  );
  assert.equal(digest, PINNED_DIGEST);
});

test('chunks tile the input and respect min and max (default parameters, random and zero data)', async () => {
  const data = Buffer.concat([data8.subarray(0, 3 * MiB), Buffer.alloc(MiB + 12345), data8.subarray(5 * MiB)]);
  const chunks = await collect(chunkStream(reads(data, 64 * KiB)));
  assertTiles(chunks, data, DEFAULT_CHUNK_PARAMS);
  // Zeros never match a mask: the zero run is cut at max.
  assert.ok(chunks.filter((c) => c.size === DEFAULT_CHUNK_PARAMS.max).length >= 3);
  const mean = data.length / chunks.length;
  assert.ok(mean > 40 * KiB && mean < 100 * KiB, `mean chunk size ${mean}`);
});

test('chunks respect small min and max too', async () => {
  const params = { min: 256, avg: 1024, max: 4096 };
  const data = Buffer.concat([data8.subarray(0, 512 * KiB), Buffer.alloc(20000, 7), data8.subarray(0, 1000)]);
  const chunks = await collect(chunkStream(reads(data, 3000), params));
  assertTiles(chunks, data, params);
  const mean = data.length / chunks.length;
  assert.ok(mean > 600 && mean < 2048, `mean chunk size ${mean}`);
});

test('the chunks do not depend on the read size', async () => {
  const reference = summary(await collect(chunkStream(reads(data8, MiB))));
  for (const size of [KiB, 4099, 64 * KiB, 3 * MiB + 1, data8.length]) {
    assert.deepEqual(summary(await collect(chunkStream(reads(data8, size)))), reference, `read size ${size}`);
  }
  const path = join(work, 'data8');
  await writeFile(path, data8);
  assert.deepEqual(summary(await collect(chunkFile(path))), reference, 'chunkFile');
});

test('an insertion near the start changes only the chunks around it', async (t) => {
  const edited = Buffer.concat([data8.subarray(0, MiB), prngBytes(100, 7), data8.subarray(MiB)]);
  const before = await collect(chunkStream(reads(data8, MiB)));
  const afterEdit = await collect(chunkStream(reads(edited, MiB)));
  const old = new Set(before.map((c) => c.sha256));
  const shared = afterEdit.filter((c) => old.has(c.sha256)).length;
  t.diagnostic(`${shared} of ${afterEdit.length} chunks shared after inserting 100 bytes at 1 MiB (${before.length} before)`);
  assert.ok(shared / afterEdit.length >= 0.9, `only ${shared} of ${afterEdit.length} shared`);
  assert.ok(afterEdit.length - shared <= 3, `${afterEdit.length - shared} new chunks`);
});

test('empty and tiny inputs', async () => {
  assert.deepEqual(await collect(chunkStream(reads(Buffer.alloc(0), 10))), []);
  const tiny = await collect(chunkStream(reads(Buffer.from('hello'), 2)));
  assert.equal(tiny.length, 1);
  assert.equal(tiny[0]!.data.toString(), 'hello');
});

test('bad parameters are refused with a CairnError', async () => {
  for (const bad of [
    { min: 100, avg: 100, max: 1000 },
    { min: 10, avg: 100, max: 1000 },
    { min: 1000, avg: 4000, max: 2000 },
    { min: 1.5, avg: 4000, max: 8000 },
    { min: 1024, avg: 4096, max: 1024 ** 3 },
    { min: 1024, avg: 4096 },
    null,
  ]) {
    assert.throws(() => validateChunkParams(bad), CairnError, JSON.stringify(bad));
  }
  await assert.rejects(collect(chunkStream(reads(data8.subarray(0, 10), 10), { min: 1, avg: 2, max: 3 })), CairnError);
});

test('throughput', async (t) => {
  const data = prngBytes(32 * MiB, 99);
  let n = 0;
  const start = performance.now();
  for await (const c of chunkStream(reads(data, MiB))) n += c.size;
  const seconds = (performance.now() - start) / 1000;
  assert.equal(n, data.length);
  t.diagnostic(`chunking (gear hash + per-chunk SHA-256): ${(data.length / 1e6 / seconds).toFixed(0)} MB/s over ${data.length / MiB} MiB`);
});
