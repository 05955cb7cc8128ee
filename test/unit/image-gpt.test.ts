import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { CairnError } from '../../src/errors.js';
import { buildGpt, decodeGuid, encodeGuid, MiB, readGpt, repairGpt, SECTOR, setPartitionUuids, writeGpt, type GptPartitionSpec } from '../../src/image/gpt.js';
import { ESP_TYPE, GPT_FLAG_READ_ONLY, partitionTypes } from '../../src/image/partition-types.js';

const amd64 = partitionTypes('amd64');
const DISK_GUID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const SPECS: GptPartitionSpec[] = [
  { label: 'esp', type: ESP_TYPE, uuid: '11111111-2222-3333-4444-555555555555', size: 3 * MiB },
  { label: 'usr-A', type: amd64.usr, uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', size: 2 * MiB + 512, attributes: GPT_FLAG_READ_ONLY },
  { label: 'wurzel-ä', type: amd64.root, uuid: '01234567-89ab-cdef-0123-456789abcdef', size: MiB },
];
const DISK_SIZE = 10 * MiB;

async function withTempDir(use: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-gpt-'));
  try {
    await use(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function region(regions: { offset: number; data: Buffer }[], offset: number): Buffer {
  const found = regions.find((r) => r.offset === offset);
  assert.ok(found, `a region at ${offset}`);
  return found.data;
}

test('GUIDs use the mixed-endian GPT encoding', () => {
  // The ESP type as it appears on every UEFI disk.
  assert.equal(encodeGuid(ESP_TYPE).toString('hex'), '28732ac11ff8d211ba4b00a0c93ec93b');
  assert.equal(decodeGuid(encodeGuid(DISK_GUID)), DISK_GUID);
  assert.throws(() => encodeGuid('not-a-guid'), CairnError);
});

test('headers and entry arrays carry correct CRC32s, and the backup mirrors the primary', () => {
  const { regions, layout } = buildGpt(DISK_SIZE, SPECS, DISK_GUID);
  const lastLba = DISK_SIZE / SECTOR - 1;
  const primary = region(regions, SECTOR);
  const backup = region(regions, lastLba * SECTOR);
  const entries = region(regions, 2 * SECTOR);
  assert.deepEqual(region(regions, (lastLba - 32) * SECTOR), entries);
  for (const [h, my, alt, entriesLba] of [
    [primary, 1, lastLba, 2],
    [backup, lastLba, 1, lastLba - 32],
  ] as const) {
    assert.equal(h.subarray(0, 8).toString('latin1'), 'EFI PART');
    const zeroed = Buffer.from(h.subarray(0, 92));
    zeroed.writeUInt32LE(0, 16);
    assert.equal(h.readUInt32LE(16), crc32(zeroed));
    assert.equal(h.readUInt32LE(88), crc32(entries));
    assert.equal(Number(h.readBigUInt64LE(24)), my);
    assert.equal(Number(h.readBigUInt64LE(32)), alt);
    assert.equal(Number(h.readBigUInt64LE(72)), entriesLba);
    assert.ok(
      h.subarray(92).every((b) => b === 0),
      'the rest of the header sector is zero',
    );
  }
  assert.equal(layout.firstUsableLba, 34);
  assert.equal(layout.lastUsableLba, lastLba - 33);
  const mbr = region(regions, 0);
  assert.equal(mbr[446 + 4], 0xee);
  assert.equal(mbr.readUInt32LE(446 + 8), 1);
  assert.equal(mbr.readUInt32LE(446 + 12), lastLba);
  assert.equal(mbr.readUInt16LE(510), 0xaa55);
});

test('partitions start on 1 MiB boundaries unless placed explicitly', () => {
  const { layout } = buildGpt(DISK_SIZE, SPECS, DISK_GUID);
  assert.deepEqual(
    layout.partitions.map((p) => [p.offset, p.size]),
    [
      [MiB, 3 * MiB],
      [4 * MiB, 2 * MiB + 512],
      [7 * MiB, MiB],
    ],
  );
  assert.deepEqual(
    layout.partitions.map((p) => [p.firstLba, p.lastLba]),
    [
      [2048, 8191],
      [8192, 12288],
      [14336, 16383],
    ],
  );
  const placed = buildGpt(DISK_SIZE, [{ ...SPECS[0]!, start: 34 * SECTOR, size: SECTOR }], DISK_GUID);
  assert.equal(placed.layout.partitions[0]!.firstLba, 34);
});

test('writeGpt then readGpt gives back the same layout', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'disk.raw');
    const written = await writeGpt(path, DISK_SIZE, SPECS, DISK_GUID);
    assert.equal((await stat(path)).size, DISK_SIZE);
    const read = await readGpt(path);
    assert.deepEqual(read, written);
    assert.equal(read.partitions[2]!.label, 'wurzel-ä');
    assert.equal(read.partitions[1]!.attributes, 1n << 60n);
    assert.equal(read.partitions[1]!.type, '8484680c-9521-48c6-9c11-b0720656f69e');
  });
});

async function corrupt(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x01;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

test('a damaged primary header, backup entry array or disagreement between copies is rejected', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'disk.raw');
    const lastLba = DISK_SIZE / SECTOR - 1;
    const cases: [number, RegExp][] = [
      [SECTOR + 40, /primary GPT header: CRC32 mismatch/],
      [2 * SECTOR + 56, /primary GPT entries: CRC32 mismatch/],
      [(lastLba - 32) * SECTOR + 130, /backup GPT entries: CRC32 mismatch/],
      [lastLba * SECTOR, /backup GPT header: no "EFI PART" signature/],
      [510, /no protective MBR/],
    ];
    for (const [offset, message] of cases) {
      await writeGpt(path, DISK_SIZE, SPECS, DISK_GUID);
      await corrupt(path, offset);
      await assert.rejects(readGpt(path), (err: Error) => err instanceof CairnError && message.test(err.message), `byte ${offset}`);
    }
    // Both copies valid on their own but different: e.g. a backup left over from an older table.
    await writeGpt(path, DISK_SIZE, SPECS, DISK_GUID);
    const other = buildGpt(DISK_SIZE, SPECS.slice(0, 2), DISK_GUID).regions;
    const handle = await open(path, 'r+');
    try {
      for (const r of other.slice(3)) await handle.write(r.data, 0, r.data.length, r.offset);
    } finally {
      await handle.close();
    }
    await assert.rejects(readGpt(path), /primary and backup GPT differ/);
    await writeGpt(path, DISK_SIZE, SPECS, DISK_GUID);
    const h = await open(path, 'r+');
    try {
      await h.truncate(DISK_SIZE - MiB);
    } finally {
      await h.close();
    }
    await assert.rejects(readGpt(path), /backup GPT header lies beyond the end of the disk/);
  });
});

test('bad partition lists are refused with the partition named', () => {
  const bad: [GptPartitionSpec[], RegExp][] = [
    [[{ ...SPECS[0]!, label: 'x'.repeat(37) }], /partition 1 \(x+\): the name is longer than 36/],
    [[SPECS[0]!, { ...SPECS[1]!, uuid: SPECS[0]!.uuid }], /partition 2 \(usr-A\): partition GUID .* used twice/],
    [[SPECS[0]!, { ...SPECS[1]!, start: 2 * MiB }], /partition 2 \(usr-A\): starts at byte 2097152, inside the previous partition/],
    [[{ ...SPECS[0]!, size: 9 * MiB }], /partition 1 \(esp\): sectors 2048-20479 lie outside the usable sectors 34-20446/],
    [[{ ...SPECS[0]!, size: 1000 }], /must be positive multiples of 512/],
    [[{ ...SPECS[0]!, type: '00000000-0000-0000-0000-000000000000' }], /zero type GUID/],
    [[{ ...SPECS[0]!, uuid: 'nope' }], /not a GUID/],
  ];
  for (const [specs, message] of bad) {
    assert.throws(
      () => buildGpt(DISK_SIZE, specs, DISK_GUID),
      (err: Error) => err instanceof CairnError && message.test(err.message),
      message.source,
    );
  }
  assert.throws(() => partitionTypes('mips'), /no disk layout for architecture "mips"/);
});

test('setPartitionUuids renames a partition in both tables; repairGpt restores a table cut between primary and backup', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'disk.raw');
    const before = await writeGpt(path, DISK_SIZE, SPECS, DISK_GUID);
    const renamed = await setPartitionUuids(path, [{ number: 2, uuid: 'ABCDEF01-2345-6789-abcd-ef0123456789' }]);
    assert.equal(renamed.partitions[1]!.uuid, 'abcdef01-2345-6789-abcd-ef0123456789');
    assert.deepEqual(
      { ...renamed, partitions: renamed.partitions.filter((p) => p.number !== 2) },
      { ...before, partitions: before.partitions.filter((p) => p.number !== 2) },
      'nothing else changed',
    );
    assert.equal(await repairGpt(path), 'none');

    // A cut after the primary was written: the backup still names the old GUID.
    const { regions } = buildGpt(DISK_SIZE, SPECS, DISK_GUID);
    const lastLba = DISK_SIZE / SECTOR - 1;
    const handle = await open(path, 'r+');
    try {
      for (const offset of [(lastLba - 32) * SECTOR, lastLba * SECTOR]) {
        const data = region(regions, offset);
        await handle.write(data, 0, data.length, offset);
      }
    } finally {
      await handle.close();
    }
    await assert.rejects(readGpt(path), /primary and backup GPT differ/);
    assert.equal(await repairGpt(path), 'from-primary');
    assert.equal((await readGpt(path)).partitions[1]!.uuid, 'abcdef01-2345-6789-abcd-ef0123456789');

    // A torn primary (its header no longer matches): the backup wins.
    await corrupt(path, SECTOR + 20);
    assert.equal(await repairGpt(path), 'from-backup');
    assert.equal((await readGpt(path)).partitions[1]!.uuid, 'abcdef01-2345-6789-abcd-ef0123456789');
    await assert.rejects(setPartitionUuids(path, [{ number: 9, uuid: '11111111-2222-3333-4444-555555555556' }]), /GPT has no partition 9/);
  });
});
