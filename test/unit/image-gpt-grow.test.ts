// Growing the root partition into a larger disk: the other partitions stay as they were, the
// backup table moves to the new end, sgdisk finds both tables sound, and a cut after the new
// backup but before the primary leaves the old table whole for the next try.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { diskPartitions } from '../../src/image/disk.js';
import { growLastPartition, MiB, readGpt, writeGpt } from '../../src/image/gpt.js';

const work = await mkdtemp(join(tmpdir(), 'cairn-grow-'));
after(() => rm(work, { recursive: true, force: true }));
const SIZES = { esp: 4 * MiB, usr: 8 * MiB, usrVerity: MiB, root: 8 * MiB };
const DISK = 32 * MiB;

async function image(name: string): Promise<string> {
  const path = join(work, name);
  await writeGpt(
    path,
    DISK,
    diskPartitions({ name: 'tiny', arch: 'amd64', sizes: SIZES, rootHash: createHash('sha256').update('grow').digest('hex') }),
    '0b4a2f6e-7c1d-4e5f-9a8b-1c2d3e4f5a6b',
  );
  return path;
}

test('the last partition grows to the end of a larger disk; sgdisk verifies both tables', async () => {
  const disk = await image('grow.raw');
  const before = await readGpt(disk);
  await truncate(disk, DISK + 64 * MiB);
  const { grown, layout } = await growLastPartition(disk, 6, DISK + 64 * MiB);
  assert.equal(grown, true);
  const root = layout.partitions.find((p) => p.number === 6)!;
  assert.ok(root.size >= before.partitions[5]!.size + 63 * MiB, `root is ${root.size} bytes`);
  assert.ok((root.lastLba + 1) * 512 <= DISK + 64 * MiB - 33 * 512, 'room for the backup table');
  assert.deepEqual(layout.partitions.slice(0, 5), before.partitions.slice(0, 5), 'the ESP and both slots are untouched');
  assert.match(execFileSync('sgdisk', ['-v', disk], { encoding: 'utf8' }), /No problems found/);
  // Nothing more to gain: nothing is written.
  const bytes = await readFile(disk);
  assert.equal((await growLastPartition(disk, 6, DISK + 64 * MiB)).grown, false);
  assert.ok(bytes.equals(await readFile(disk)));
});

test('only the last partition may grow', async () => {
  const disk = await image('not-last.raw');
  await truncate(disk, DISK + 8 * MiB);
  await assert.rejects(growLastPartition(disk, 2, DISK + 8 * MiB), /partition 2 is not the last on the disk \(partition 6 is\)/);
});

test('a cut after the new backup, before the primary, leaves the old table whole; the next try grows', async () => {
  const disk = await image('cut.raw');
  const primaryBefore = (await readFile(disk)).subarray(0, 34 * 512);
  await truncate(disk, DISK + 16 * MiB);
  await growLastPartition(disk, 6, DISK + 16 * MiB);
  // Put the old primary back: what the disk holds if power went after the backup's sync.
  const handle = await open(disk, 'r+');
  await handle.write(primaryBefore, 0, primaryBefore.length, 0);
  await handle.close();
  const old = await readGpt(disk);
  assert.equal(old.partitions[5]!.size, SIZES.root, 'the old table reads whole');
  const { grown, layout } = await growLastPartition(disk, 6, DISK + 16 * MiB);
  assert.equal(grown, true);
  assert.ok(layout.partitions[5]!.size > SIZES.root);
  assert.match(execFileSync('sgdisk', ['-v', disk], { encoding: 'utf8' }), /No problems found/);
});
