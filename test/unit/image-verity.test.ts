// cairn's dm-verity: tree layout math, the hash device written out block by block for small
// synthetic images (built here from the format's definition), the superblock fields, and the
// checker finding the first bad block. The byte-for-byte comparison with veritysetup itself is
// in test/integration/image-erofs-verity.test.ts.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import {
  computeVerity,
  dmVerityParameters,
  encodeSuperblock,
  parseSuperblock,
  usrHashArgument,
  verifyImage,
  verityLayout,
  verityPartitionUuids,
} from '../../src/image/verity.js';

const B = 4096;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-verity-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
async function dataFile(blocks: number): Promise<{ path: string; data: Buffer }> {
  const data = randomBytes(blocks * B);
  const path = join(work, `data-${counter++}`);
  await writeFile(path, data);
  return { path, data };
}

const h = (salt: Buffer, block: Buffer) => createHash('sha256').update(salt).update(block).digest();
const blockOf = (data: Buffer, i: number) => data.subarray(i * B, (i + 1) * B);
/** One hash block holding `digests` and zeros after them. */
const hashBlock = (digests: Buffer[]) => Buffer.concat([...digests, Buffer.alloc(B - 32 * digests.length)]);

test('layout: one data block needs no tree levels, only the superblock', () => {
  const layout = verityLayout(1);
  assert.deepEqual(layout.levels, []);
  assert.equal(layout.hashDeviceSize, B);
});

test('layout: 128 blocks fit one hash block; 129 need a second level', () => {
  assert.deepEqual(verityLayout(128).levels, [{ firstBlock: 1, blocks: 1 }]);
  assert.equal(verityLayout(128).hashDeviceSize, 2 * B);
  // The top level comes first on the device, the level over the data blocks last.
  assert.deepEqual(verityLayout(129).levels, [
    { firstBlock: 2, blocks: 2 },
    { firstBlock: 1, blocks: 1 },
  ]);
  assert.equal(verityLayout(129).hashDeviceSize, 4 * B);
});

test('layout: 128*128 blocks take two levels, one more block takes three', () => {
  assert.deepEqual(verityLayout(128 * 128).levels, [
    { firstBlock: 2, blocks: 128 },
    { firstBlock: 1, blocks: 1 },
  ]);
  const layout = verityLayout(128 * 128 + 1);
  assert.deepEqual(layout.levels, [
    { firstBlock: 4, blocks: 129 },
    { firstBlock: 2, blocks: 2 },
    { firstBlock: 1, blocks: 1 },
  ]);
  assert.equal(layout.hashDeviceSize, (1 + 1 + 2 + 129) * B);
});

test('layout: smaller hash blocks hold fewer digests; bad sizes are refused', () => {
  const layout = verityLayout(17, 4096, 512);
  assert.equal(layout.digestsPerBlock, 16);
  assert.deepEqual(layout.levels, [
    { firstBlock: 2, blocks: 2 },
    { firstBlock: 1, blocks: 1 },
  ]);
  assert.equal(layout.hashDeviceSize, 4 * 512);
  assert.throws(() => verityLayout(0), CairnError);
  assert.throws(() => verityLayout(4, 3000), /block size 3000/);
  assert.throws(() => verityLayout(4, 4096, 8192), /block size 8192/);
});

test('superblock: fields sit where cryptsetup puts them and read back', () => {
  const salt = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
  const sb = { uuid: '01234567-89ab-cdef-0123-456789abcdef', algorithm: 'sha256', dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 129, salt };
  const block = encodeSuperblock(sb);
  assert.equal(block.length, B);
  assert.equal(block.subarray(0, 8).toString('latin1'), 'verity\0\0');
  assert.equal(block.readUInt32LE(8), 1);
  assert.equal(block.readUInt32LE(12), 1);
  assert.equal(block.subarray(16, 32).toString('hex'), '0123456789abcdef0123456789abcdef');
  assert.equal(block.subarray(32, 39).toString('latin1'), 'sha256\0');
  assert.equal(block.readUInt32LE(64), 4096);
  assert.equal(block.readUInt32LE(68), 4096);
  assert.equal(block.readBigUInt64LE(72), 129n);
  assert.equal(block.readUInt16LE(80), 32);
  assert.deepEqual(block.subarray(88, 120), salt);
  assert.ok(block.subarray(120).every((byte) => byte === 0));
  assert.deepEqual(parseSuperblock(block, 'test'), sb);

  const wrong = (offset: number, value: number) => {
    const copy = Buffer.from(block);
    copy.writeUInt32LE(value, offset);
    return copy;
  };
  assert.throws(() => parseSuperblock(wrong(0, 0), 'x'), /signature/);
  assert.throws(() => parseSuperblock(wrong(8, 2), 'x'), /version 2/);
  assert.throws(() => parseSuperblock(wrong(12, 0), 'x'), /hash type 0/);
  const sha1 = Buffer.from(block);
  sha1.write('sha1\0\0', 32, 'latin1');
  assert.throws(() => parseSuperblock(sha1, 'x'), /algorithm "sha1"/);
  assert.throws(() => parseSuperblock(wrong(64, 1000), 'x'), /block size 1000/);
  assert.throws(() => encodeSuperblock({ ...sb, uuid: 'not-a-uuid' }), CairnError);
});

test('one data block: the root hash is the digest of that block and the device is just the superblock', async () => {
  const { path, data } = await dataFile(1);
  const salt = randomBytes(32);
  const out = join(work, 'one.verity');
  const result = await computeVerity(path, out, { salt });
  assert.equal(result.rootHash, h(salt, data).toString('hex'));
  const device = await readFile(out);
  assert.equal(device.length, B);
  assert.equal(result.hashSize, B);
  assert.deepEqual(parseSuperblock(device, out).salt, salt);
});

test('129 data blocks: superblock, top block, then the two blocks over the data', async () => {
  const { path, data } = await dataFile(129);
  const salt = randomBytes(32);
  const uuid = '11111111-2222-3333-4444-555555555555';
  const out = join(work, '129.verity');
  const result = await computeVerity(path, out, { salt, uuid });

  const leaves = Array.from({ length: 129 }, (_, i) => h(salt, blockOf(data, i)));
  const level0 = [hashBlock(leaves.slice(0, 128)), hashBlock(leaves.slice(128))];
  const level1 = hashBlock(level0.map((block) => h(salt, block)));
  const superblock = encodeSuperblock({ uuid, algorithm: 'sha256', dataBlockSize: B, hashBlockSize: B, dataBlocks: 129, salt });
  assert.deepEqual(await readFile(out), Buffer.concat([superblock, level1, ...level0]));
  assert.equal(result.rootHash, h(salt, level1).toString('hex'));
  assert.deepEqual(
    { ...result, rootHash: '' },
    { rootHash: '', salt: salt.toString('hex'), uuid, dataBlocks: 129, dataBlockSize: B, hashBlockSize: B, hashSize: 4 * B },
  );
});

test('without a salt: the salt is the data SHA-256 and the output repeats byte for byte', async () => {
  const { path, data } = await dataFile(300);
  const first = await computeVerity(path, join(work, 'a.verity'));
  const second = await computeVerity(path, join(work, 'b.verity'));
  assert.equal(first.salt, createHash('sha256').update(data).digest('hex'));
  assert.deepEqual(second, first);
  assert.deepEqual(await readFile(join(work, 'b.verity')), await readFile(join(work, 'a.verity')));
  assert.match(first.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

  const other = await dataFile(300);
  assert.notEqual((await computeVerity(other.path, join(work, 'c.verity'))).uuid, first.uuid);
});

test('data that is empty or not whole blocks is refused and leaves no hash file', async () => {
  const dir = await mkdtemp(join(work, 'bad-'));
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'ragged'), Buffer.alloc(B + 1));
  await assert.rejects(computeVerity(join(dir, 'empty'), join(dir, 'out')), /0 bytes, not a whole number/);
  await assert.rejects(computeVerity(join(dir, 'ragged'), join(dir, 'out')), /4097 bytes/);
  await assert.rejects(computeVerity(join(dir, 'ragged'), join(dir, 'out'), { salt: Buffer.alloc(257) }), CairnError);
  assert.deepEqual((await readdir(dir)).sort(), ['empty', 'ragged']);
});

async function flipByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] ^= 0x01;
  await writeFile(path, bytes);
}

test('verifyImage accepts the image, also inside a longer partition, and finds the first bad block', async () => {
  const { path, data } = await dataFile(300);
  const hashPath = join(work, 'check.verity');
  const { rootHash } = await computeVerity(path, hashPath);
  assert.equal((await verifyImage(path, hashPath, rootHash)).ok, true);

  // Partitions are larger than the images they hold: the tail is not covered.
  const partition = join(work, 'partition');
  await writeFile(partition, Buffer.concat([data, randomBytes(5 * B)]));
  await writeFile(join(work, 'hash-partition'), Buffer.concat([await readFile(hashPath), randomBytes(3 * B)]));
  assert.equal((await verifyImage(partition, join(work, 'hash-partition'), rootHash)).ok, true);

  await flipByte(partition, 257 * B + 100);
  await flipByte(partition, 290 * B);
  assert.deepEqual(await verifyImage(partition, join(work, 'hash-partition'), rootHash), {
    ok: false,
    problem: 'data-block',
    block: 257,
    message: `${partition}: data block 257 does not match the hash tree`,
  });

  const other = 'f'.repeat(64);
  const wrongRoot = await verifyImage(path, hashPath, other);
  assert.equal(wrongRoot.ok, false);
  assert.equal(!wrongRoot.ok && wrongRoot.block, verityLayout(300).levels.at(-1)!.firstBlock);

  // 300 blocks: top block at 1, level 0 at 2..4; a flipped digest for data block 200 sits in block 3.
  await flipByte(hashPath, 3 * B + (200 - 128) * 32);
  const badTree = await verifyImage(path, hashPath, rootHash);
  assert.deepEqual(!badTree.ok && [badTree.problem, badTree.block], ['hash-block', 3]);
});

test('verifyImage reports a damaged superblock or a short device instead of throwing', async () => {
  const { path } = await dataFile(200);
  const hashPath = join(work, 'sb.verity');
  const { rootHash } = await computeVerity(path, hashPath);
  const bytes = await readFile(hashPath);

  await writeFile(join(work, 'short.verity'), bytes.subarray(0, 2 * B));
  assert.deepEqual(Object.entries(await verifyImage(path, join(work, 'short.verity'), rootHash)).slice(0, 2), [
    ['ok', false],
    ['problem', 'short'],
  ]);
  await writeFile(join(work, 'short.data'), (await readFile(path)).subarray(0, 199 * B));
  assert.equal(((await verifyImage(join(work, 'short.data'), hashPath, rootHash)) as { problem: string }).problem, 'short');

  await flipByte(hashPath, 2);
  const result = await verifyImage(path, hashPath, rootHash);
  assert.equal(!result.ok && result.problem, 'superblock');
  await assert.rejects(verifyImage(path, hashPath, 'ABC'), CairnError);
});

test('partition UUIDs, usrhash= and the dm table come from the root hash', () => {
  const root = '00112233445566778899aabbccddeeff' + 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
  assert.deepEqual(verityPartitionUuids(root), { usr: '00112233-4455-6677-8899-aabbccddeeff', usrVerity: 'f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f' });
  assert.equal(usrHashArgument(root), `usrhash=${root}`);
  assert.throws(() => verityPartitionUuids(root.slice(2)), CairnError);
  assert.throws(() => usrHashArgument(`${root.slice(0, 63)}G`), CairnError);
  const table = dmVerityParameters(
    { rootHash: root, salt: 'ab'.repeat(32), uuid: '', dataBlocks: 300, dataBlockSize: B, hashBlockSize: B, hashSize: 6 * B },
    '/dev/vda3',
    '/dev/vda4',
  );
  assert.equal(table, `1 /dev/vda3 /dev/vda4 4096 4096 300 1 sha256 ${root} ${'ab'.repeat(32)}`);
});
