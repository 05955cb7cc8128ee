// The patch codec on generated data: every kind of change an image goes through between
// releases round-trips exactly; edits in place cost little; a hostile patch is refused with a
// clear error instead of reading outside the old bytes or allocating without bound.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { brotliCompressSync } from 'node:zlib';
import { applyPatch, makePatch, MAX_PATCH_SIDE } from '../../src/release/binary-patch.js';

/** Deterministic pseudo-random bytes (so a failure reproduces). */
function bytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let block: Buffer;
  for (let at = 0, i = 0; at < n; at += block.length, i++) {
    block = createHash('sha256').update(`${seed}:${i}`).digest();
    block.copy(out, at);
  }
  return out;
}

/** Half random, half text-like: compressible like an image's metadata and files. */
function imageLike(n: number, seed: string): Buffer {
  const out = bytes(n, seed);
  for (let i = 0; i < n; i += 64) out.fill(0x20 + (i % 50), i, Math.min(n, i + 32));
  return out;
}

const old = imageLike(512 * 1024, 'old');

async function roundTrip(neu: Buffer, base: Buffer = old): Promise<Buffer> {
  const patch = await makePatch(base, neu);
  const made = await applyPatch(base, patch, 'test patch');
  assert.ok(made.equals(neu), 'the patch rebuilds the new bytes exactly');
  return patch;
}

test('edits in place (renumbered inodes, moved block addresses) make a patch a small fraction of the changed bytes', async () => {
  const neu = Buffer.from(old);
  for (let i = 100; i < neu.length; i += 997) neu[i] = neu[i]! ^ 0x5a;
  const patch = await roundTrip(neu);
  const compressedNew = brotliCompressSync(neu).length;
  assert.ok(patch.length * 20 < compressedNew, `patch ${patch.length} bytes against ${compressedNew} for the new bytes compressed`);
});

test('insertions, deletions and moved blocks round-trip, and shifted content is found again', async () => {
  const inserted = imageLike(20_000, 'inserted');
  const neu = Buffer.concat([
    old.subarray(0, 100_000),
    inserted,
    old.subarray(100_000, 300_000),
    old.subarray(350_000, 400_000),
    old.subarray(450_000),
    old.subarray(300_000, 350_000),
  ]);
  const patch = await roundTrip(neu);
  const compressedInserted = brotliCompressSync(inserted).length;
  assert.ok(patch.length < compressedInserted + 4096, `patch ${patch.length} bytes; the inserted bytes alone compress to ${compressedInserted}`);
});

test('degenerate inputs: empty sides, tiny sides, identical and unrelated bytes', async () => {
  await roundTrip(Buffer.alloc(0));
  await roundTrip(Buffer.from('short'), Buffer.from('tiny'));
  await roundTrip(old, Buffer.alloc(0));
  await roundTrip(Buffer.from('x'.repeat(100)), Buffer.alloc(0));
  const same = await roundTrip(old);
  assert.ok(same.length < 200, `an unchanged stretch costs ${same.length} bytes`);
  await roundTrip(bytes(100_000, 'unrelated'));
});

test('a hostile or damaged patch is refused, never read outside the old bytes', async () => {
  const neu = Buffer.from(old);
  neu[5000] = 1;
  const patch = await makePatch(old, neu);
  await assert.rejects(applyPatch(old, Buffer.from('NOPE'), 'p'), /p: not a cairn patch/);
  await assert.rejects(applyPatch(old, patch.subarray(0, patch.length - 7), 'p'), /p: the patch does not decompress/);
  // Against shorter old bytes the same patch reads past their end.
  await assert.rejects(applyPatch(old.subarray(0, 1000), patch, 'p'), /p: the patch reads old bytes \d+\.\.\d+, there are 1000/);
  // A target length beyond the limit is refused before anything is allocated or decompressed.
  const huge = Buffer.concat([Buffer.from('CPT1'), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x7f])]);
  await assert.rejects(applyPatch(old, huge, 'p'), new RegExp(`at most ${MAX_PATCH_SIDE} are allowed`));
  // A patch that says it makes other than what its parts add up to.
  const lying = Buffer.from(patch);
  lying[4] = (lying[4]! + 1) & 0x7f;
  await assert.rejects(applyPatch(old, lying, 'p'), /p: the patch/);
});
