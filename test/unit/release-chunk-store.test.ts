// The chunk store (round trip, deduplication, refusing corrupted or oversized chunks) and chunk
// indexes (building, rebuilding adds nothing, reassembly, validation of hostile indexes).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { brotliCompressSync } from 'node:zlib';
import { CairnError } from '../../src/errors.js';
import { prngBytes } from '../fixtures/seeded-bytes.js';
import { buildChunkIndex, ChunkIndex, reassemble, validateChunkIndex } from '../../src/release/chunk-index.js';
import { ChunkStore, PutResult } from '../../src/release/chunk-store.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Somewhat compressible data: random words from a small vocabulary. */
function textish(length: number, seed: number): Buffer {
  const words = ['usr', 'lib', 'systemd', 'x86_64-linux-gnu', 'share', 'doc', 'libc.so.6', 'erofs', '\n', '/', ' '];
  const r = prngBytes(length, seed);
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < length; i++) {
    const w = words[r[i % r.length]! % words.length]!;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('').slice(0, length));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: string;
let counter = 0;
const fresh = (name: string) => join(work, `${name}-${counter++}`);
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-chunk-store-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const sub of await readdir(dir)) n += (await readdir(join(dir, sub))).length;
  return n;
}

test('put then get gives the chunk back; a second put adds nothing', async () => {
  const store = new ChunkStore(fresh('store'));
  const chunk = textish(100 * KiB, 1);
  assert.equal(await store.has(sha(chunk)), false);
  const first = await store.put(chunk);
  assert.equal(first.sha256, sha(chunk));
  assert.equal(first.added, true);
  assert.ok(first.storedSize < chunk.length / 2, `stored ${first.storedSize} bytes`);
  assert.equal(await store.has(first.sha256), true);
  assert.match(store.pathOf(first.sha256), new RegExp(`/${first.sha256.slice(0, 2)}/${first.sha256}\\.br$`));
  assert.deepEqual(await store.get(first.sha256, chunk.length), chunk);
  const second = await store.put(chunk);
  assert.deepEqual(second, { ...first, added: false });
  assert.equal(await countFiles(store.dir), 1);
});

test('concurrent puts of one chunk write it once', async () => {
  const store = new ChunkStore(fresh('store'));
  const chunk = prngBytes(64 * KiB, 2);
  const results = await Promise.all([store.put(chunk), store.put(chunk), store.put(chunk)]);
  assert.equal(results.filter((r) => r.added).length, 1);
  assert.equal(await countFiles(store.dir), 1);
});

test('a corrupted, truncated, swapped or oversized stored chunk is refused on get', async () => {
  const store = new ChunkStore(fresh('store'));
  const chunk = textish(80 * KiB, 3);
  const { sha256 } = await store.put(chunk);
  const path = store.pathOf(sha256);
  const good = await readFile(path);

  // Other (valid Brotli) content under this name: the hash check catches it.
  const other = Buffer.from(chunk);
  other[1000] ^= 1;
  await writeFile(path, brotliCompressSync(other));
  await assert.rejects(store.get(sha256, chunk.length), (e: unknown) => e instanceof CairnError && /SHA-256/.test(e.message));
  // Flipped bytes in the compressed stream.
  const flipped = Buffer.from(good);
  flipped[flipped.length >> 1] ^= 0xff;
  await writeFile(path, flipped);
  await assert.rejects(store.get(sha256, chunk.length), CairnError);
  // Truncated.
  await writeFile(path, good.subarray(0, good.length - 10));
  await assert.rejects(store.get(sha256, chunk.length), CairnError);
  // Decompresses to more than expected: stopped at the cap.
  await writeFile(path, brotliCompressSync(Buffer.concat([chunk, chunk])));
  await assert.rejects(store.get(sha256, chunk.length), (e: unknown) => e instanceof CairnError && /more than the expected/.test(e.message));
  // A stored file far larger than its chunk could need is not even read.
  await writeFile(path, prngBytes(200 * KiB, 4));
  await assert.rejects(store.get(sha256, chunk.length), (e: unknown) => e instanceof CairnError && /too large/.test(e.message));
  // The right file, the wrong expected size.
  await writeFile(path, good);
  await assert.rejects(store.get(sha256, chunk.length - 1), CairnError);
  await assert.rejects(store.get(sha256, chunk.length + 1), CairnError);
  assert.deepEqual(await store.get(sha256, chunk.length), chunk);
  // Missing chunks and names that are not hashes.
  await assert.rejects(store.get('0'.repeat(64), 10), (e: unknown) => e instanceof CairnError && /not in the store/.test(e.message));
  await assert.rejects(store.get('../../etc/passwd', 10), CairnError);
  await assert.rejects(store.has('A'.repeat(64)), CairnError);
});

/** An image of ~3 MiB: random data, a repeat of part of it (duplicate chunks), text, zeros. */
async function makeImage(seed: number): Promise<{ path: string; data: Buffer }> {
  const r = prngBytes(MiB, seed);
  const data = Buffer.concat([r, textish(MiB, seed + 1), r, Buffer.alloc(600 * KiB), prngBytes(1234, seed + 2)]);
  const path = fresh('image.erofs');
  await writeFile(path, data);
  return { path, data };
}

test('building an index stores each chunk once; building it again adds nothing; reassembly gives the same file', async () => {
  const { path, data } = await makeImage(10);
  const store = new ChunkStore(fresh('store'));
  const firstPuts: PutResult[] = [];
  const index = await buildChunkIndex(path, store, undefined, (r) => firstPuts.push(r));
  assert.equal(index.format, 'cairn-chunks/1');
  assert.equal(index.size, data.length);
  assert.equal(index.sha256, sha(data));
  assert.deepEqual(validateChunkIndex(JSON.parse(JSON.stringify(index))), index);
  assert.equal(firstPuts.length, index.chunks.length);
  const distinct = new Set(index.chunks.map((c) => c.sha256)).size;
  assert.ok(distinct < index.chunks.length, 'the repeated megabyte and the zeros give duplicate chunks');
  assert.equal(firstPuts.filter((r) => r.added).length, distinct);
  assert.equal(await countFiles(store.dir), distinct);

  const secondPuts: PutResult[] = [];
  const again = await buildChunkIndex(path, store, undefined, (r) => secondPuts.push(r));
  assert.deepEqual(again, index);
  assert.ok(secondPuts.every((r) => !r.added));
  assert.equal(await countFiles(store.dir), distinct);

  const out = fresh('rebuilt.erofs');
  await reassemble(index, store, out);
  assert.ok((await readFile(out)).equals(data));
});

test('a second image sharing most data adds only its new chunks', async () => {
  const { path, data } = await makeImage(20);
  const store = new ChunkStore(fresh('store'));
  await buildChunkIndex(path, store);
  const edited = Buffer.concat([data.subarray(0, 1500 * KiB), Buffer.from('a new file in the image'), data.subarray(1500 * KiB)]);
  const path2 = fresh('image2.erofs');
  await writeFile(path2, edited);
  const puts: PutResult[] = [];
  const index2 = await buildChunkIndex(path2, store, undefined, (r) => puts.push(r));
  const added = puts.filter((r) => r.added).length;
  assert.ok(added >= 1 && added <= 2, `${added} chunks added`);
  const out = fresh('rebuilt2.erofs');
  await reassemble(index2, store, out);
  assert.ok((await readFile(out)).equals(edited));
});

test('reassembly refuses a missing chunk or a wrong whole-image hash and leaves no file', async () => {
  const { path } = await makeImage(30);
  const store = new ChunkStore(fresh('store'));
  const index = await buildChunkIndex(path, store);
  const outDir = fresh('out');
  await import('node:fs/promises').then((fs) => fs.mkdir(outDir));
  const out = join(outDir, 'usr.erofs');

  await assert.rejects(reassemble({ ...index, sha256: 'f'.repeat(64) }, store, out), (e: unknown) => e instanceof CairnError && /SHA-256/.test(e.message));
  assert.deepEqual(await readdir(outDir), []);

  await rm(store.pathOf(index.chunks[2]!.sha256));
  await assert.rejects(reassemble(index, store, out), (e: unknown) => e instanceof CairnError && /not in the store/.test(e.message));
  assert.deepEqual(await readdir(outDir), []);
});

test('buildChunkIndex on a missing image is a CairnError', async () => {
  await assert.rejects(buildChunkIndex(fresh('nope'), new ChunkStore(fresh('store'))), CairnError);
});

test('validateChunkIndex rejects malformed and hostile indexes', () => {
  const h = (i: number) => sha(Buffer.from([i]));
  const params = { min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB };
  const valid: ChunkIndex = {
    format: 'cairn-chunks/1',
    image: 'usr.erofs',
    size: 300 * KiB,
    sha256: h(0),
    params,
    chunks: [
      { offset: 0, size: 100 * KiB, sha256: h(1), storedSize: 90 * KiB },
      { offset: 100 * KiB, size: 190 * KiB, sha256: h(2), storedSize: 190 * KiB },
      { offset: 290 * KiB, size: 10 * KiB, sha256: h(3), storedSize: 5 * KiB },
    ],
  };
  assert.deepEqual(validateChunkIndex(structuredClone(valid)), valid);
  assert.deepEqual(validateChunkIndex({ ...valid, size: 0, chunks: [] }).chunks, []);

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each case breaks the index in its own way
  const cases: [string, (x: any) => void, RegExp][] = [
    [
      'gap',
      (x) => {
        x.chunks[1].offset += 1;
      },
      /gap/,
    ],
    [
      'overlap',
      (x) => {
        x.chunks[1].offset -= 1;
      },
      /overlaps/,
    ],
    [
      'not from 0',
      (x) => {
        x.chunks[0].offset = 1;
      },
      /gap/,
    ],
    [
      'oversize chunk',
      (x) => {
        x.chunks[1].size = 300 * KiB;
        x.chunks[2].offset = 400 * KiB;
        x.size = 410 * KiB;
      },
      /more than the maximum/,
    ],
    [
      'undersize chunk not last',
      (x) => {
        x.chunks[0].size = 10 * KiB;
        x.chunks[1].offset = 10 * KiB;
        x.chunks[2].offset = 200 * KiB;
        x.size = 210 * KiB;
      },
      /less than the minimum/,
    ],
    [
      'total short of size',
      (x) => {
        x.size += 1;
      },
      /cover/,
    ],
    [
      'past size',
      (x) => {
        x.size -= 1;
      },
      /past the image size/,
    ],
    [
      'empty chunk',
      (x) => {
        x.chunks[2].size = 0;
      },
      /size must be/,
    ],
    [
      'bad chunk hash',
      (x) => {
        x.chunks[0].sha256 = 'zz';
      },
      /sha256/,
    ],
    [
      'upper-case hash',
      (x) => {
        x.sha256 = x.sha256.toUpperCase();
      },
      /sha256/,
    ],
    [
      'stored size far too large',
      (x) => {
        x.chunks[0].storedSize = 10 * MiB;
      },
      /storedSize/,
    ],
    [
      'negative offset',
      (x) => {
        x.chunks[0].offset = -1;
      },
      /offset/,
    ],
    [
      'fractional size',
      (x) => {
        x.chunks[0].size = 100 * KiB + 0.5;
      },
      /size/,
    ],
    [
      'string size',
      (x) => {
        x.size = '307200';
      },
      /size/,
    ],
    [
      'unknown field',
      (x) => {
        x.extra = 1;
      },
      /unknown field/,
    ],
    [
      'unknown chunk field',
      (x) => {
        x.chunks[0].url = 'http://x';
      },
      /unknown field/,
    ],
    [
      'missing field',
      (x) => {
        delete x.params;
      },
      /lacks/,
    ],
    [
      'wrong format',
      (x) => {
        x.format = 'cairn-chunks/2';
      },
      /format/,
    ],
    [
      'path as image name',
      (x) => {
        x.image = '../usr.erofs';
      },
      /plain file name/,
    ],
    [
      'bad params',
      (x) => {
        x.params.min = x.params.max;
      },
      /min < avg < max/,
    ],
    [
      'chunks not an array',
      (x) => {
        x.chunks = {};
      },
      /array/,
    ],
  ];
  for (const [name, mutate, message] of cases) {
    const x = structuredClone(valid);
    mutate(x);
    assert.throws(
      () => validateChunkIndex(x),
      (e: unknown) => e instanceof CairnError && message.test(e.message),
      name,
    );
  }
  for (const junk of [null, [], 'x', 42]) assert.throws(() => validateChunkIndex(junk), CairnError);
});
