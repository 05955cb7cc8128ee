// GUID Partition Table (UEFI 2.10, chapter 5) written and read by cairn itself: the layout must
// be byte-for-byte reproducible, which partitioning tools with their random GUIDs are not, and the
// agent has to read the table on hosts where no such tool is installed.
import { type FileHandle, open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { CairnError } from '../errors.js';

/** cairn writes 512-byte sectors: what disk images, loop devices and virtio disks use by default. */
export const SECTOR = 512;
export const MiB = 1024 * 1024;
const ENTRY_COUNT = 128;
const ENTRY_SIZE = 128;
const ENTRIES_BYTES = ENTRY_COUNT * ENTRY_SIZE;
const ENTRIES_SECTORS = ENTRIES_BYTES / SECTOR;
const HEADER_SIZE = 92;
const REVISION_1_0 = 0x00010000;
const SIGNATURE = Buffer.from('EFI PART', 'latin1');
/** Partition names are 36 UTF-16 code units. */
const NAME_UNITS = 36;
/** A larger entry array is no real table; refusing it bounds what a hostile disk makes us read. */
const MAX_ENTRIES_BYTES = 1 * MiB;

export interface GptPartitionSpec {
  label: string;
  /** Partition type GUID, lowercase text form. */
  type: string;
  /** Unique partition GUID, text form. */
  uuid: string;
  /** Byte offset; by default the next 1 MiB boundary after the previous partition. */
  start?: number;
  /** Bytes, a multiple of the sector size. */
  size: number;
  attributes?: bigint;
}

export interface GptPartition {
  /** 1-based, as in /dev/sda1 or `sgdisk -i 1`. */
  number: number;
  label: string;
  type: string;
  uuid: string;
  firstLba: number;
  /** Inclusive, as GPT stores it. */
  lastLba: number;
  offset: number;
  size: number;
  attributes: bigint;
}

export interface GptLayout {
  diskGuid: string;
  diskSize: number;
  firstUsableLba: number;
  lastUsableLba: number;
  partitions: GptPartition[];
}

const GUID_FORM = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** GUIDs store their first three fields little-endian and the last two as written. */
export function encodeGuid(text: string): Buffer {
  if (!GUID_FORM.test(text)) {
    throw new CairnError(`not a GUID: ${JSON.stringify(text)}`, 'write it as 8-4-4-4-12 hexadecimal digits');
  }
  const hex = Buffer.from(text.replace(/-/g, ''), 'hex');
  const out = Buffer.from(hex);
  out.writeUInt32LE(hex.readUInt32BE(0), 0);
  out.writeUInt16LE(hex.readUInt16BE(4), 4);
  out.writeUInt16LE(hex.readUInt16BE(6), 6);
  return out;
}

export function decodeGuid(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  const hex = Buffer.alloc(16);
  b.copy(hex);
  hex.writeUInt32BE(b.readUInt32LE(0), 0);
  hex.writeUInt16BE(b.readUInt16LE(4), 4);
  hex.writeUInt16BE(b.readUInt16LE(6), 6);
  const h = hex.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

function alignUp(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

function place(diskSize: number, specs: GptPartitionSpec[]): GptPartition[] {
  if (!Number.isSafeInteger(diskSize) || diskSize % SECTOR !== 0) {
    throw new CairnError(`disk size ${diskSize} is not a whole number of ${SECTOR}-byte sectors`);
  }
  const sectors = diskSize / SECTOR;
  const firstUsable = 2 + ENTRIES_SECTORS;
  const lastUsable = sectors - 2 - ENTRIES_SECTORS;
  if (specs.length > ENTRY_COUNT) throw new CairnError(`a GPT holds at most ${ENTRY_COUNT} partitions, not ${specs.length}`);
  const seen = new Set<string>();
  let previousEnd = 0;
  return specs.map((spec, index) => {
    const where = `partition ${index + 1} (${spec.label})`;
    if (spec.label.length > NAME_UNITS) throw new CairnError(`${where}: the name is longer than ${NAME_UNITS} UTF-16 units`);
    if (spec.type.toLowerCase() === ZERO_GUID) throw new CairnError(`${where}: the zero type GUID marks an unused entry`);
    encodeGuid(spec.type);
    encodeGuid(spec.uuid);
    const uuid = spec.uuid.toLowerCase();
    if (uuid === ZERO_GUID || seen.has(uuid)) throw new CairnError(`${where}: partition GUID ${uuid} is zero or used twice`);
    seen.add(uuid);
    const offset = spec.start ?? alignUp(Math.max(previousEnd, MiB), MiB);
    if (!Number.isSafeInteger(offset) || offset % SECTOR !== 0 || !Number.isSafeInteger(spec.size) || spec.size <= 0 || spec.size % SECTOR !== 0) {
      throw new CairnError(`${where}: start ${offset} and size ${spec.size} must be positive multiples of ${SECTOR} bytes`);
    }
    const firstLba = offset / SECTOR;
    const lastLba = firstLba + spec.size / SECTOR - 1;
    if (firstLba < firstUsable || lastLba > lastUsable) {
      throw new CairnError(
        `${where}: sectors ${firstLba}-${lastLba} lie outside the usable sectors ${firstUsable}-${lastUsable} of a ${diskSize}-byte disk`,
        'make the disk larger or the partition smaller',
      );
    }
    if (offset < previousEnd)
      throw new CairnError(`${where}: starts at byte ${offset}, inside the previous partition`, 'list partitions in disk order without overlaps');
    previousEnd = offset + spec.size;
    const attributes = spec.attributes ?? 0n;
    if (attributes < 0n || attributes >= 1n << 64n) throw new CairnError(`${where}: attributes do not fit 64 bits`);
    return { number: index + 1, label: spec.label, type: spec.type.toLowerCase(), uuid, firstLba, lastLba, offset, size: spec.size, attributes };
  });
}

function entryArray(partitions: GptPartition[]): Buffer {
  const entries = Buffer.alloc(ENTRIES_BYTES);
  for (const p of partitions) {
    const at = (p.number - 1) * ENTRY_SIZE;
    encodeGuid(p.type).copy(entries, at);
    encodeGuid(p.uuid).copy(entries, at + 16);
    entries.writeBigUInt64LE(BigInt(p.firstLba), at + 32);
    entries.writeBigUInt64LE(BigInt(p.lastLba), at + 40);
    entries.writeBigUInt64LE(p.attributes, at + 48);
    entries.write(p.label, at + 56, NAME_UNITS * 2, 'utf16le');
  }
  return entries;
}

function header(myLba: number, alternateLba: number, entriesLba: number, layout: GptLayout, entriesCrc: number): Buffer {
  const h = Buffer.alloc(SECTOR);
  SIGNATURE.copy(h, 0);
  h.writeUInt32LE(REVISION_1_0, 8);
  h.writeUInt32LE(HEADER_SIZE, 12);
  h.writeBigUInt64LE(BigInt(myLba), 24);
  h.writeBigUInt64LE(BigInt(alternateLba), 32);
  h.writeBigUInt64LE(BigInt(layout.firstUsableLba), 40);
  h.writeBigUInt64LE(BigInt(layout.lastUsableLba), 48);
  encodeGuid(layout.diskGuid).copy(h, 56);
  h.writeBigUInt64LE(BigInt(entriesLba), 72);
  h.writeUInt32LE(ENTRY_COUNT, 80);
  h.writeUInt32LE(ENTRY_SIZE, 84);
  h.writeUInt32LE(entriesCrc, 88);
  h.writeUInt32LE(crc32(h.subarray(0, HEADER_SIZE)), 16);
  return h;
}

/** Protective MBR: one 0xEE partition over the disk, so MBR-only tools see it as in use. */
function protectiveMbr(sectors: number): Buffer {
  const mbr = Buffer.alloc(SECTOR);
  const entry = 446;
  Buffer.from([0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff]).copy(mbr, entry);
  mbr.writeUInt32LE(1, entry + 8);
  mbr.writeUInt32LE(Math.min(sectors - 1, 0xffffffff), entry + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  return mbr;
}

export interface GptRegion {
  offset: number;
  data: Buffer;
}

/** The table's bytes and where they go: computed without touching a file, so tests can look at them. */
export function buildGpt(diskSize: number, specs: GptPartitionSpec[], diskGuid: string): { layout: GptLayout; regions: GptRegion[] } {
  encodeGuid(diskGuid);
  const partitions = place(diskSize, specs);
  const sectors = diskSize / SECTOR;
  const lastLba = sectors - 1;
  const layout: GptLayout = {
    diskGuid: diskGuid.toLowerCase(),
    diskSize,
    firstUsableLba: 2 + ENTRIES_SECTORS,
    lastUsableLba: lastLba - 1 - ENTRIES_SECTORS,
    partitions,
  };
  const entries = entryArray(partitions);
  const entriesCrc = crc32(entries);
  const backupEntriesLba = lastLba - ENTRIES_SECTORS;
  return {
    layout,
    regions: [
      { offset: 0, data: protectiveMbr(sectors) },
      { offset: SECTOR, data: header(1, lastLba, 2, layout, entriesCrc) },
      { offset: 2 * SECTOR, data: entries },
      { offset: backupEntriesLba * SECTOR, data: entries },
      { offset: lastLba * SECTOR, data: header(lastLba, 1, backupEntriesLba, layout, entriesCrc) },
    ],
  };
}

async function withHandle<T>(target: string | FileHandle, flags: string, use: (handle: FileHandle) => Promise<T>): Promise<T> {
  if (typeof target !== 'string') return use(target);
  const handle = await open(target, flags);
  try {
    return await use(handle);
  } finally {
    await handle.close();
  }
}

/**
 * Writes a GPT for a disk of `diskSize` bytes into a file or device, leaving partition contents
 * alone. A regular file is sized to `diskSize` (created when missing).
 */
export async function writeGpt(target: string | FileHandle, diskSize: number, specs: GptPartitionSpec[], diskGuid: string): Promise<GptLayout> {
  const { layout, regions } = buildGpt(diskSize, specs, diskGuid);
  if (typeof target === 'string') await (await open(target, 'a')).close();
  await withHandle(target, 'r+', async (handle) => {
    const stat = await handle.stat();
    if (stat.isFile() && stat.size !== diskSize) await handle.truncate(diskSize);
    for (const region of regions) await handle.write(region.data, 0, region.data.length, region.offset);
  });
  return layout;
}

async function readExactly(handle: FileHandle, offset: number, length: number, what: string): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, offset);
  if (bytesRead !== length) throw new CairnError(`${what} lies beyond the end of the disk`, 'the disk image is truncated or its GPT is damaged');
  return buffer;
}

function safeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new CairnError(`${what} ${value} is out of range`);
  return Number(value);
}

interface ParsedHeader {
  myLba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

function parseHeader(sector: Buffer, which: string, expectedLba: number): ParsedHeader {
  const fail = (problem: string): never => {
    throw new CairnError(`${which} GPT header: ${problem}`, 'the partition table is damaged; rewrite the disk image or repair it with sgdisk');
  };
  if (!sector.subarray(0, 8).equals(SIGNATURE)) fail('no "EFI PART" signature');
  const size = sector.readUInt32LE(12);
  if (size < HEADER_SIZE || size > SECTOR) fail(`header size ${size} is not between ${HEADER_SIZE} and ${SECTOR}`);
  const stored = sector.readUInt32LE(16);
  const copy = Buffer.from(sector.subarray(0, size));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== stored) fail('CRC32 mismatch');
  const h: ParsedHeader = {
    myLba: safeNumber(sector.readBigUInt64LE(24), 'MyLBA'),
    alternateLba: safeNumber(sector.readBigUInt64LE(32), 'AlternateLBA'),
    firstUsableLba: safeNumber(sector.readBigUInt64LE(40), 'FirstUsableLBA'),
    lastUsableLba: safeNumber(sector.readBigUInt64LE(48), 'LastUsableLBA'),
    diskGuid: decodeGuid(sector.subarray(56, 72)),
    entriesLba: safeNumber(sector.readBigUInt64LE(72), 'PartitionEntryLBA'),
    entryCount: sector.readUInt32LE(80),
    entrySize: sector.readUInt32LE(84),
    entriesCrc: sector.readUInt32LE(88),
  };
  if (h.myLba !== expectedLba) fail(`MyLBA is ${h.myLba}, expected ${expectedLba}`);
  if (h.entrySize < ENTRY_SIZE || h.entrySize % ENTRY_SIZE !== 0 || (h.entrySize & (h.entrySize - 1)) !== 0)
    fail(`entry size ${h.entrySize} is not 128 times a power of two`);
  if (h.entryCount === 0 || h.entryCount * h.entrySize > MAX_ENTRIES_BYTES) fail(`${h.entryCount} entries of ${h.entrySize} bytes is not a plausible table`);
  if (h.firstUsableLba > h.lastUsableLba) fail('the usable area is empty');
  return h;
}

function parseEntries(entries: Buffer, h: ParsedHeader): GptPartition[] {
  const partitions: GptPartition[] = [];
  for (let i = 0; i < h.entryCount; i++) {
    const e = entries.subarray(i * h.entrySize, (i + 1) * h.entrySize);
    const type = decodeGuid(e.subarray(0, 16));
    if (type === ZERO_GUID) continue;
    const firstLba = safeNumber(e.readBigUInt64LE(32), `partition ${i + 1} first LBA`);
    const lastLba = safeNumber(e.readBigUInt64LE(40), `partition ${i + 1} last LBA`);
    if (firstLba < h.firstUsableLba || lastLba > h.lastUsableLba || firstLba > lastLba) {
      throw new CairnError(
        `GPT partition ${i + 1}: sectors ${firstLba}-${lastLba} lie outside the usable sectors ${h.firstUsableLba}-${h.lastUsableLba}`,
        'the partition table is damaged',
      );
    }
    const name = e.subarray(56, 56 + NAME_UNITS * 2).toString('utf16le');
    const end = name.indexOf('\0');
    partitions.push({
      number: i + 1,
      label: end === -1 ? name : name.slice(0, end),
      type,
      uuid: decodeGuid(e.subarray(16, 32)),
      firstLba,
      lastLba,
      offset: firstLba * SECTOR,
      size: (lastLba - firstLba + 1) * SECTOR,
      attributes: e.readBigUInt64LE(48),
    });
  }
  const byStart = [...partitions].sort((a, b) => a.firstLba - b.firstLba);
  for (let i = 1; i < byStart.length; i++) {
    if (byStart[i]!.firstLba <= byStart[i - 1]!.lastLba) {
      throw new CairnError(`GPT partitions ${byStart[i - 1]!.number} and ${byStart[i]!.number} overlap`, 'the partition table is damaged');
    }
  }
  return partitions;
}

async function readTable(handle: FileHandle, lba: number, which: string): Promise<{ header: ParsedHeader; entries: Buffer }> {
  const h = parseHeader(await readExactly(handle, lba * SECTOR, SECTOR, `the ${which} GPT header`), which, lba);
  const entries = await readExactly(handle, h.entriesLba * SECTOR, h.entryCount * h.entrySize, `the ${which} GPT entries`);
  if (crc32(entries) !== h.entriesCrc) {
    throw new CairnError(`${which} GPT entries: CRC32 mismatch`, 'the partition table is damaged; rewrite the disk image or repair it with sgdisk');
  }
  return { header: h, entries };
}

/**
 * Reads and checks a GPT: protective MBR, both headers and both entry arrays with their CRC32s,
 * and that the two copies agree. Any damage is an error: cairn does not write slots on a disk
 * whose table it cannot trust.
 */
export async function readGpt(target: string | FileHandle): Promise<GptLayout> {
  return withHandle(target, 'r', async (handle) => {
    const mbr = await readExactly(handle, 0, SECTOR, 'the protective MBR');
    if (mbr.readUInt16LE(510) !== 0xaa55 || ![0, 1, 2, 3].some((i) => mbr[446 + i * 16 + 4] === 0xee)) {
      throw new CairnError('no protective MBR: this is not a GPT disk', 'write the disk image with cairn');
    }
    const primary = await readTable(handle, 1, 'primary');
    const backup = await readTable(handle, primary.header.alternateLba, 'backup');
    const p = primary.header;
    const b = backup.header;
    if (
      b.alternateLba !== 1 ||
      b.diskGuid !== p.diskGuid ||
      b.firstUsableLba !== p.firstUsableLba ||
      b.lastUsableLba !== p.lastUsableLba ||
      !backup.entries.equals(primary.entries)
    ) {
      throw new CairnError('the primary and backup GPT differ', 'the partition table is damaged; rewrite the disk image or repair it with sgdisk');
    }
    if (p.lastUsableLba >= b.entriesLba || p.entriesLba + (p.entryCount * p.entrySize) / SECTOR > p.firstUsableLba) {
      throw new CairnError('the GPT entry arrays overlap the usable area', 'the partition table is damaged');
    }
    const stat = await handle.stat();
    const diskSize = stat.isFile() ? stat.size : (p.alternateLba + 1) * SECTOR;
    return { diskGuid: p.diskGuid, diskSize, firstUsableLba: p.firstUsableLba, lastUsableLba: p.lastUsableLba, partitions: parseEntries(primary.entries, p) };
  });
}

/**
 * Changes partition GUIDs in place (the agent renames a slot for the release written into it).
 * The primary table is written and synced before the backup: a cut between the two leaves one
 * whole table with its CRCs (firmware, the initramfs and repairGpt use it), never two broken ones.
 */
export async function setPartitionUuids(target: string, changes: { number: number; uuid: string }[]): Promise<GptLayout> {
  const layout = await readGpt(target);
  for (const c of changes) {
    if (!layout.partitions.some((p) => p.number === c.number)) throw new CairnError(`GPT has no partition ${c.number}`);
  }
  const partitions = layout.partitions.map((p) => ({ ...p, uuid: (changes.find((c) => c.number === p.number)?.uuid ?? p.uuid).toLowerCase() }));
  return writeTables(target, { ...layout, partitions });
}

async function writeTables(target: string, layout: GptLayout): Promise<GptLayout> {
  const specs: GptPartitionSpec[] = layout.partitions.map((p) => ({
    label: p.label,
    type: p.type,
    uuid: p.uuid,
    start: p.offset,
    size: p.size,
    attributes: p.attributes,
  }));
  // buildGpt numbers partitions from 1 in list order: keep gaps out of this path.
  if (layout.partitions.some((p, i) => p.number !== i + 1)) throw new CairnError('GPT partitions are not numbered 1..n: cairn does not rewrite such a table');
  const { regions } = buildGpt(layout.diskSize, specs, layout.diskGuid);
  const [, primaryHeader, primaryEntries, backupEntries, backupHeader] = regions as [GptRegion, GptRegion, GptRegion, GptRegion, GptRegion];
  await withHandle(target, 'r+', async (handle) => {
    for (const group of [
      [primaryEntries, primaryHeader],
      [backupEntries, backupHeader],
    ]) {
      for (const r of group) await handle.write(r.data, 0, r.data.length, r.offset);
      await handle.sync();
    }
  });
  return readGpt(target);
}

/**
 * After a cut during setPartitionUuids one table may be stale or torn: rewrites both from the
 * primary when it is whole, else from the backup. Returns what it did ('none' when they agree).
 */
export async function repairGpt(target: string): Promise<'none' | 'from-primary' | 'from-backup'> {
  try {
    await readGpt(target);
    return 'none';
  } catch {
    // fall through: find a whole table
  }
  const layout = await withHandle(target, 'r', async (handle) => {
    const stat = await handle.stat();
    for (const which of ['primary', 'backup'] as const) {
      try {
        const lba =
          which === 'primary'
            ? 1
            : await readTable(handle, 1, 'primary').then(
                (t) => t.header.alternateLba,
                () => (stat.isFile() ? stat.size / SECTOR - 1 : -1),
              );
        if (lba < 1) continue;
        const t = await readTable(handle, lba, which);
        const diskSize = stat.isFile() ? stat.size : ((which === 'primary' ? t.header.alternateLba : t.header.myLba) + 1) * SECTOR;
        return {
          which,
          layout: {
            diskGuid: t.header.diskGuid,
            diskSize,
            firstUsableLba: t.header.firstUsableLba,
            lastUsableLba: t.header.lastUsableLba,
            partitions: parseEntries(t.entries, t.header),
          },
        };
      } catch {
        // try the other copy
      }
    }
    throw new CairnError('neither GPT copy is whole', 'the partition table is damaged beyond what cairn repairs');
  });
  await writeTables(target, layout.layout);
  return layout.which === 'primary' ? 'from-primary' : 'from-backup';
}

/**
 * Grows partition `number`, which must be the last on the disk, to the end of a disk that became
 * larger (`diskSize`, e.g. a cloud volume bigger than the image), moving the backup table to the
 * new end. The new backup is written and synced before the primary that points to it: a cut
 * between the two leaves the old tables whole (the old backup stays where it was, in space no
 * partition used until the primary grows one over it), and the next try does it again.
 * Returns the layout, grown or as it was when there is nothing to gain.
 */
export async function growLastPartition(target: string, number: number, diskSize: number): Promise<{ grown: boolean; layout: GptLayout }> {
  const layout = await readGpt(target);
  const last = layout.partitions.reduce((a, b) => (b.offset > a.offset ? b : a));
  if (last.number !== number)
    throw new CairnError(`partition ${number} is not the last on the disk (partition ${last.number} is)`, 'only the last partition can grow into new space');
  const size = Math.floor((diskSize - last.offset - (2 + ENTRIES_SECTORS) * SECTOR) / MiB) * MiB;
  // The table's own idea of the disk is its last usable sector (a file's size already is the new one).
  if (diskSize / SECTOR - 2 - ENTRIES_SECTORS <= layout.lastUsableLba || size <= last.size) return { grown: false, layout };
  if (layout.partitions.some((p, i) => p.number !== i + 1)) throw new CairnError('GPT partitions are not numbered 1..n: cairn does not rewrite such a table');
  const specs: GptPartitionSpec[] = layout.partitions.map((p) => ({
    label: p.label,
    type: p.type,
    uuid: p.uuid,
    start: p.offset,
    size: p.number === number ? size : p.size,
    attributes: p.attributes,
  }));
  const { regions } = buildGpt(diskSize, specs, layout.diskGuid);
  const [mbr, primaryHeader, primaryEntries, backupEntries, backupHeader] = regions as [GptRegion, GptRegion, GptRegion, GptRegion, GptRegion];
  await withHandle(target, 'r+', async (handle) => {
    for (const group of [[backupEntries, backupHeader], [primaryEntries, primaryHeader], [mbr]]) {
      for (const r of group) await handle.write(r.data, 0, r.data.length, r.offset);
      await handle.sync();
    }
  });
  return { grown: true, layout: await readGpt(target) };
}
