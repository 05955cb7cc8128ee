// Slot detection on a real disk image: a cairn layout with a verified EROFS release in each
// slot, read from the file and, as root, through a partitioned loop device whose slot partition
// is mounted the way the host mounts /usr, so the boot disk is found through sysfs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { detectSlots } from '../../src/agent/slots.js';
import { deviceOf, findBootDisk } from '../../src/image/block-device.js';
import { diskPartitions } from '../../src/image/disk.js';
import { MiB, writeGpt } from '../../src/image/gpt.js';
import { computeVerity, verityPartitionUuids } from '../../src/image/verity.js';
import { withLoopDisk } from '../fixtures/loop-disk.js';

const isRoot = process.getuid?.() === 0;
const asRoot = { skip: isRoot ? false : 'loop devices and mounts need root' };
const SIZES = { esp: 4 * MiB, usr: 8 * MiB, usrVerity: MiB, root: 4 * MiB };
const run = (command: string, args: string[]): string => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

let work: string;
let disk: string;
const releases: Record<'A' | 'B', { rootHash: string; cmdline: string }> = {} as never;

/** A release as the build makes it: an EROFS /usr with a marker file and its verity tree. */
async function release(name: 'A' | 'B'): Promise<{ usr: string; verity: string; rootHash: string }> {
  const tree = join(work, `tree-${name}`);
  await mkdir(join(tree, 'lib'), { recursive: true });
  await writeFile(join(tree, 'lib', 'os-release'), `IMAGE_VERSION=${name === 'A' ? '1.0' : '2.0'}\n`);
  const usr = join(work, `usr-${name}.erofs`);
  run('mkfs.erofs', ['-T', '1720000000', '--all-root', usr, tree]);
  const verity = join(work, `usr-${name}.verity`);
  return { usr, verity, rootHash: (await computeVerity(usr, verity)).rootHash };
}

async function copyInto(target: string, source: string, offset: number): Promise<void> {
  const handle = await open(target, 'r+');
  try {
    await handle.write(readFileSync(source), 0, undefined, offset);
  } finally {
    await handle.close();
  }
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-agent-slots-'));
  const a = await release('A');
  const b = await release('B');
  // The disk as provisioned with release A, after the agent wrote release B into slot B.
  const slotB = verityPartitionUuids(b.rootHash);
  const specs = diskPartitions({ name: 'tiny', arch: 'amd64', sizes: SIZES, rootHash: a.rootHash }).map((p) =>
    p.label === 'usr-B' ? { ...p, uuid: slotB.usr } : p.label === 'usr-B-verity' ? { ...p, uuid: slotB.usrVerity } : p,
  );
  disk = join(work, 'disk.raw');
  const layout = await writeGpt(disk, 32 * MiB, specs, '6a1e5c3b-0d2f-4e8a-9b7c-1f2e3d4c5b6a');
  const at = (label: string): number => layout.partitions.find((p) => p.label === label)!.offset;
  await copyInto(disk, a.usr, at('usr-A'));
  await copyInto(disk, a.verity, at('usr-A-verity'));
  await copyInto(disk, b.usr, at('usr-B'));
  await copyInto(disk, b.verity, at('usr-B-verity'));
  for (const [name, r] of [
    ['A', a],
    ['B', b],
  ] as const) {
    const cmdline = join(work, `cmdline-${name}`);
    await writeFile(cmdline, `BOOT_IMAGE=/EFI/Linux/tiny.efi console=ttyS0 usrhash=${r.rootHash} quiet -- --log-level=info\n`);
    releases[name] = { rootHash: r.rootHash, cmdline };
  }
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('each usrhash finds its own slot on the disk image, and the other is the inactive one', async () => {
  const onA = await detectSlots({ disk, cmdline: releases.A.cmdline });
  assert.deepEqual([onA.usrHash, onA.running.name, onA.running.usr.number, onA.running.verity.number], [releases.A.rootHash, 'A', 2, 3]);
  assert.deepEqual([onA.inactive.name, onA.inactive.usr.number, onA.inactive.verity.number], ['B', 4, 5]);
  const onB = await detectSlots({ disk, cmdline: releases.B.cmdline });
  assert.deepEqual([onB.running.name, onB.running.usr.label, onB.inactive.name, onB.inactive.usr.label], ['B', 'usr-B', 'A', 'usr-A']);
  const stray = join(work, 'cmdline-other');
  await writeFile(stray, `usrhash=${'0'.repeat(64)}`);
  await assert.rejects(detectSlots({ disk, cmdline: stray }), /no slot holds the running \/usr/);
  await writeFile(stray, 'console=ttyS0');
  await assert.rejects(detectSlots({ disk, cmdline: stray }), /no usrhash= in .*cmdline-other: this system did not boot a cairn image/);
});

test('with slot B mounted from a loop device, sysfs leads from the mount to the disk', asRoot, async () => {
  await withLoopDisk(disk, 5, async (loop) => {
    const mnt = loop.mount(4, 'erofs');
    assert.equal(readFileSync(join(mnt, 'lib', 'os-release'), 'utf8'), 'IMAGE_VERSION=2.0\n');
    assert.equal(await findBootDisk(await deviceOf(mnt)), loop.device);
    const slots = await detectSlots({ cmdline: releases.B.cmdline, usrMount: mnt });
    assert.deepEqual([slots.disk, slots.running.name, slots.running.usr.number, slots.inactive.name], [loop.device, 'B', 4, 'A']);
  });
});
