// Slot detection from a layout computed in memory, and the boot disk from a sysfs tree laid out
// the way the kernel does it for dm-verity over two partitions of one virtio disk.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { identifySlots, usrHashFromCmdline } from '../../src/agent/slots.js';
import { findBootDisk } from '../../src/image/block-device.js';
import { CairnError } from '../../src/errors.js';
import { diskPartitions } from '../../src/image/disk.js';
import { buildGpt, MiB } from '../../src/image/gpt.js';
import { verityPartitionUuids } from '../../src/image/verity.js';

const HASH_A = createHash('sha256').update('release A').digest('hex');
const HASH_B = createHash('sha256').update('release B').digest('hex');
const SIZES = { esp: 2 * MiB, usr: 4 * MiB, usrVerity: MiB, root: 2 * MiB };

test('usrhash= is read like the initramfs reads it', () => {
  assert.equal(usrHashFromCmdline(`console=ttyS0 usrhash=${HASH_A} quiet`), HASH_A);
  assert.equal(usrHashFromCmdline(`usrhash=${HASH_A.toUpperCase()}\n`), HASH_A, 'lower-cased');
  assert.equal(usrHashFromCmdline(`usrhash=${HASH_A} usrhash=${HASH_B}`), HASH_B, 'the last one wins');
  assert.equal(usrHashFromCmdline(`usrhash=${HASH_A} -- usrhash=${HASH_B}`), HASH_A, 'after -- is for init');
  assert.equal(usrHashFromCmdline(`x="a b -- c" usrhash="${HASH_B}"`), HASH_B, 'quotes group and are dropped');
  assert.equal(usrHashFromCmdline('console=ttyS0 myusrhash=1'), undefined);
  assert.throws(() => usrHashFromCmdline('usrhash=abc'), CairnError);
});

test('the running slot is the one whose partition UUIDs spell the usrhash', () => {
  const specs = diskPartitions({ name: 'tiny', arch: 'amd64', sizes: SIZES, rootHash: HASH_A });
  const disk = buildGpt(64 * MiB, specs, '01234567-89ab-cdef-0123-456789abcdef').layout;
  const fromA = identifySlots(disk, HASH_A, '/dev/vda');
  assert.deepEqual([fromA.running.name, fromA.running.usr.number, fromA.running.verity.number], ['A', 2, 3]);
  assert.deepEqual([fromA.inactive.name, fromA.inactive.usr.label, fromA.inactive.verity.label], ['B', 'usr-B', 'usr-B-verity']);
  // After an update wrote HASH_B into slot B and gave it the matching UUIDs.
  const b = verityPartitionUuids(HASH_B);
  const updated = specs.map((p) => (p.label === 'usr-B' ? { ...p, uuid: b.usr } : p.label === 'usr-B-verity' ? { ...p, uuid: b.usrVerity } : p));
  const fromB = identifySlots(buildGpt(64 * MiB, updated, '01234567-89ab-cdef-0123-456789abcdef').layout, HASH_B, '/dev/vda');
  assert.deepEqual([fromB.running.name, fromB.inactive.name, fromB.inactive.usr.number], ['B', 'A', 2]);
  assert.throws(() => identifySlots(disk, HASH_B, '/dev/vda'), /no slot holds the running \/usr/);
  const noB = buildGpt(
    64 * MiB,
    specs.filter((p) => p.label !== 'usr-B-verity'),
    '01234567-89ab-cdef-0123-456789abcdef',
  ).layout;
  assert.throws(() => identifySlots(noB, HASH_A, '/dev/vda'), /no partition labelled usr-B-verity/);
  const uneven = buildGpt(
    64 * MiB,
    specs.map((p) => (p.label === 'usr-B' ? { ...p, size: 2 * MiB } : p)),
    '01234567-89ab-cdef-0123-456789abcdef',
  ).layout;
  assert.throws(() => identifySlots(uneven, HASH_A, '/dev/vda'), /slots A and B differ/);
});

let sysfs: string;
before(async () => {
  sysfs = await mkdtemp(join(tmpdir(), 'cairn-agent-sysfs-'));
  const devices = join(sysfs, 'devices');
  const vda = join(devices, 'pci0000:00/0000:00:04.0/virtio2/block/vda');
  const nvme = join(devices, 'pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1');
  for (const p of ['vda2', 'vda3']) {
    await mkdir(join(vda, p), { recursive: true });
    await writeFile(join(vda, p, 'partition'), p.slice(3));
  }
  await mkdir(join(nvme, 'nvme0n1p1'), { recursive: true });
  await writeFile(join(nvme, 'nvme0n1p1', 'partition'), '1');
  await mkdir(join(devices, 'virtual/block/dm-0/slaves'), { recursive: true });
  await mkdir(join(devices, 'virtual/block/dm-1/slaves'), { recursive: true });
  await mkdir(join(sysfs, 'class/block'), { recursive: true });
  await mkdir(join(sysfs, 'dev/block'), { recursive: true });
  const classLink = async (name: string, target: string): Promise<void> => symlink(`../../devices/${target}`, join(sysfs, 'class/block', name));
  await classLink('vda', 'pci0000:00/0000:00:04.0/virtio2/block/vda');
  await classLink('vda2', 'pci0000:00/0000:00:04.0/virtio2/block/vda/vda2');
  await classLink('vda3', 'pci0000:00/0000:00:04.0/virtio2/block/vda/vda3');
  await classLink('nvme0n1p1', 'pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1/nvme0n1p1');
  await classLink('dm-0', 'virtual/block/dm-0');
  await classLink('dm-1', 'virtual/block/dm-1');
  // dm-0: verity over vda2 (data) and vda3 (hash); dm-1 spans two disks.
  for (const [dm, slaves] of [
    ['dm-0', ['vda2', 'vda3']],
    ['dm-1', ['vda2', 'nvme0n1p1']],
  ] as const) {
    for (const s of slaves)
      await symlink(
        `../../../../devices/${s.startsWith('vda') ? 'pci0000:00/0000:00:04.0/virtio2/block/vda' : 'pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1'}/${s}`,
        join(devices, 'virtual/block', dm, 'slaves', s),
      );
  }
  const devLink = async (id: string, target: string): Promise<void> => symlink(`../../devices/${target}`, join(sysfs, 'dev/block', id));
  await devLink('253:0', 'virtual/block/dm-0');
  await devLink('253:1', 'virtual/block/dm-1');
  await devLink('254:2', 'pci0000:00/0000:00:04.0/virtio2/block/vda/vda2');
  await devLink('254:0', 'pci0000:00/0000:00:04.0/virtio2/block/vda');
});
after(async () => {
  await rm(sysfs, { recursive: true, force: true });
});

test('the boot disk is found through the dm-verity device, a partition, or a whole disk', async () => {
  assert.equal(await findBootDisk({ major: 253, minor: 0 }, sysfs), '/dev/vda');
  assert.equal(await findBootDisk({ major: 254, minor: 2 }, sysfs), '/dev/vda');
  assert.equal(await findBootDisk({ major: 254, minor: 0 }, sysfs), '/dev/vda');
  await assert.rejects(findBootDisk({ major: 253, minor: 1 }, sysfs), /spans disks nvme0n1, vda|spans disks vda, nvme0n1/);
  await assert.rejects(findBootDisk({ major: 9, minor: 9 }, sysfs), /no block device 9:9 in sysfs/);
});
