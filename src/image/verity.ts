// cairn's own dm-verity: builds the hash device exactly as `veritysetup format` lays it out
// (format version 1, hash type 1, sha256) and checks an image the way the kernel does, so the
// build needs no cryptsetup and the agent can check a slot before it boots from it.
//
// Hash device: block 0 holds the 512-byte superblock (zero-padded to one hash block); then
// the tree levels, the top level (a single block) first and the level that hashes the data
// blocks last. Every digest is sha256(salt || block); each hash block holds as many digests
// as fit (a power of two) and is zero-padded. The root hash is the digest of the top block,
// or of the only data block when the data is one block long (the tree then has no levels).
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { sha256File } from '../hash-file.js';
import { CairnError } from '../errors.js';
import { writeAtomic } from '../fs-atomic.js';

const ALGORITHM = 'sha256';
const DIGEST_SIZE = 32;
const SUPERBLOCK_SIZE = 512;
const SIGNATURE = Buffer.from('verity\0\0', 'latin1');
const MAX_SALT = 256;
// The kernel's limit (DM_VERITY_MAX_LEVELS); veritysetup refuses deeper trees too.
const MAX_LEVELS = 63;
// Large sequential reads; a multiple of every allowed block size.
const READ_CHUNK = 4 << 20;

export interface VerityLevel {
  /** Position of the level's first block in the hash device, in hash blocks (block 0 is the superblock). */
  firstBlock: number;
  blocks: number;
}

export interface VerityLayout {
  dataBlocks: number;
  dataBlockSize: number;
  hashBlockSize: number;
  digestsPerBlock: number;
  /** levels[0] hashes the data blocks, levels[levels.length - 1] is the single top block. */
  levels: VerityLevel[];
  /** Bytes of the hash device: superblock block plus every level. */
  hashDeviceSize: number;
}

function checkBlockSize(size: number, what: string): void {
  // The kernel takes powers of two from 512 bytes up to its page size (4 KiB on the targets cairn builds for).
  if (!Number.isInteger(size) || size < 512 || size > 4096 || (size & (size - 1)) !== 0) {
    throw new CairnError(`dm-verity ${what} block size ${size} is not supported`, 'use a power of two from 512 to 4096 (4096 is the default)');
  }
}

/** Where `veritysetup format` puts each level of the tree for `dataBlocks` data blocks. */
export function verityLayout(dataBlocks: number, dataBlockSize = 4096, hashBlockSize = 4096): VerityLayout {
  checkBlockSize(dataBlockSize, 'data');
  checkBlockSize(hashBlockSize, 'hash');
  if (!Number.isSafeInteger(dataBlocks) || dataBlocks < 1) {
    throw new CairnError(`dm-verity needs at least one data block, got ${dataBlocks}`, 'build a non-empty image before computing its hash tree');
  }
  const bits = Math.floor(Math.log2(hashBlockSize / DIGEST_SIZE));
  const digestsPerBlock = 2 ** bits;
  // Levels needed until one block covers every data block; BigInt because the shifts pass 2^53.
  const last = BigInt(dataBlocks - 1);
  let depth = 0;
  while (bits * depth < 64 && last >> BigInt(bits * depth) !== 0n) depth++;
  if (depth > MAX_LEVELS) throw new CairnError(`dm-verity tree for ${dataBlocks} blocks is too deep`, 'use larger hash blocks');
  const levels: VerityLevel[] = new Array<VerityLevel>(depth);
  let position = 1;
  for (let level = depth - 1; level >= 0; level--) {
    const span = BigInt(digestsPerBlock) ** BigInt(level + 1);
    const blocks = Number((BigInt(dataBlocks) + span - 1n) / span);
    levels[level] = { firstBlock: position, blocks };
    position += blocks;
  }
  return { dataBlocks, dataBlockSize, hashBlockSize, digestsPerBlock, levels, hashDeviceSize: position * hashBlockSize };
}

export interface VeritySuperblock {
  uuid: string;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  salt: Buffer;
}

const UUID_FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function uuidBytes(uuid: string): Buffer {
  if (!UUID_FORMAT.test(uuid)) {
    throw new CairnError(`not a UUID: ${JSON.stringify(uuid)}`, 'write it as 8-4-4-4-12 lower-case hex digits');
  }
  return Buffer.from(uuid.replaceAll('-', ''), 'hex');
}

/** Formats 16 bytes in their stored order, the way libuuid and systemd print them. */
export function formatUuid(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes.subarray(0, 16)).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The verity superblock (struct verity_sb of cryptsetup, little-endian), padded to one hash block. */
export function encodeSuperblock(sb: VeritySuperblock): Buffer {
  if (sb.salt.length > MAX_SALT) throw new CairnError(`dm-verity salt is ${sb.salt.length} bytes`, `use at most ${MAX_SALT} bytes`);
  const block = Buffer.alloc(sb.hashBlockSize);
  SIGNATURE.copy(block, 0);
  block.writeUInt32LE(1, 8); // superblock version
  block.writeUInt32LE(1, 12); // hash type 1: salt before the data
  uuidBytes(sb.uuid).copy(block, 16);
  block.write(sb.algorithm, 32, 32, 'latin1');
  block.writeUInt32LE(sb.dataBlockSize, 64);
  block.writeUInt32LE(sb.hashBlockSize, 68);
  block.writeBigUInt64LE(BigInt(sb.dataBlocks), 72);
  block.writeUInt16LE(sb.salt.length, 80);
  sb.salt.copy(block, 88);
  return block;
}

/** Reads and checks a superblock written by cairn or by veritysetup; `where` names it in errors. */
export function parseSuperblock(block: Buffer, where: string): VeritySuperblock {
  const bad = (what: string) =>
    new CairnError(`${where}: not a usable dm-verity superblock: ${what}`, 'rebuild the verity image with cairn or `veritysetup format`');
  if (block.length < SUPERBLOCK_SIZE) throw bad(`only ${block.length} bytes`);
  if (!block.subarray(0, 8).equals(SIGNATURE)) throw bad('wrong signature');
  if (block.readUInt32LE(8) !== 1) throw bad(`version ${block.readUInt32LE(8)}, cairn reads version 1`);
  if (block.readUInt32LE(12) !== 1) throw bad(`hash type ${block.readUInt32LE(12)}, cairn reads type 1`);
  const algorithmField = block.subarray(32, 64);
  const end = algorithmField.indexOf(0);
  const algorithm = algorithmField.subarray(0, end < 0 ? 32 : end).toString('latin1');
  if (algorithm !== ALGORITHM) throw bad(`algorithm ${JSON.stringify(algorithm)}, cairn uses ${ALGORITHM}`);
  const dataBlockSize = block.readUInt32LE(64);
  const hashBlockSize = block.readUInt32LE(68);
  const dataBlocks = block.readBigUInt64LE(72);
  const saltSize = block.readUInt16LE(80);
  if (saltSize > MAX_SALT) throw bad(`salt size ${saltSize}`);
  if (dataBlocks > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${dataBlocks} data blocks`);
  try {
    checkBlockSize(dataBlockSize, 'data');
    checkBlockSize(hashBlockSize, 'hash');
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
  return {
    uuid: formatUuid(block.subarray(16, 32)),
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks: Number(dataBlocks),
    salt: Buffer.from(block.subarray(88, 88 + saltSize)),
  };
}

function digest(salt: Buffer, block: Uint8Array): Buffer {
  return createHash(ALGORITHM).update(salt).update(block).digest();
}

/** Byte offset, within the hash area that follows the superblock block, of digest `index` of `level`. */
function entryOffset(layout: VerityLayout, level: number, index: number): number {
  const { firstBlock } = layout.levels[level]!;
  const block = firstBlock - 1 + Math.floor(index / layout.digestsPerBlock);
  return block * layout.hashBlockSize + (index % layout.digestsPerBlock) * DIGEST_SIZE;
}

/** Calls `each(block, index)` for the first `blocks` blocks of `path`, reading in large chunks. */
async function forEachBlock(path: string, blockSize: number, blocks: number, each: (block: Buffer, index: number) => void, base = 0): Promise<void> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let index = 0;
    while (index < blocks) {
      const want = Math.min(READ_CHUNK, (blocks - index) * blockSize);
      const got = await readFull(file, buffer, want, base + index * blockSize);
      if (got < want)
        throw new CairnError(
          `${path} ended after ${index * blockSize + got} bytes, expected ${blocks * blockSize}`,
          'the file changed or was truncated while cairn read it',
        );
      for (let at = 0; at < want; at += blockSize) each(buffer.subarray(at, at + blockSize), index++);
    }
  } finally {
    await file.close();
  }
}

async function readFull(file: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** The tree levels (everything after the superblock block) and the root digest. */
async function buildTree(data: Region, layout: VerityLayout, salt: Buffer): Promise<{ area: Buffer; root: Buffer }> {
  const area = Buffer.alloc(layout.hashDeviceSize - layout.hashBlockSize);
  if (layout.levels.length === 0) {
    let root: Buffer = Buffer.alloc(0);
    await forEachBlock(
      data.path,
      layout.dataBlockSize,
      1,
      (block) => {
        root = digest(salt, block);
      },
      data.offset,
    );
    return { area, root };
  }
  await forEachBlock(
    data.path,
    layout.dataBlockSize,
    layout.dataBlocks,
    (block, index) => {
      digest(salt, block).copy(area, entryOffset(layout, 0, index));
    },
    data.offset,
  );
  for (let level = 1; level < layout.levels.length; level++) {
    const below = layout.levels[level - 1]!;
    for (let index = 0; index < below.blocks; index++) {
      const start = (below.firstBlock - 1 + index) * layout.hashBlockSize;
      digest(salt, area.subarray(start, start + layout.hashBlockSize)).copy(area, entryOffset(layout, level, index));
    }
  }
  const top = (layout.levels.at(-1)!.firstBlock - 1) * layout.hashBlockSize;
  return { area, root: digest(salt, area.subarray(top, top + layout.hashBlockSize)) };
}

export interface VerityOptions {
  /** Default: the SHA-256 of the data file, so the same image always gets the same salt. */
  salt?: Buffer;
  /** UUID stored in the superblock. Default: derived from the salt. */
  uuid?: string;
  dataBlockSize?: number;
  hashBlockSize?: number;
}

export interface VerityResult {
  /** Hex; what `usrhash=` carries. */
  rootHash: string;
  /** Hex. When cairn derived it, this is also the data file's SHA-256. */
  salt: string;
  uuid: string;
  dataBlocks: number;
  dataBlockSize: number;
  hashBlockSize: number;
  /** Bytes written to the hash device file. */
  hashSize: number;
}

/** A reproducible superblock UUID: name-based on the salt, marked as an RFC 9562 version 8 (custom) UUID. */
export function uuidFromSalt(salt: Buffer): string {
  const bytes = createHash(ALGORITHM).update('cairn dm-verity uuid\0').update(salt).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return formatUuid(bytes);
}

/**
 * Computes the dm-verity hash device for the image at `dataPath` and writes it to `hashPath`
 * (atomically). The data is streamed, never held whole; the tree (about 1/128 of it) is.
 */
export async function computeVerity(dataPath: string, hashPath: string, options: VerityOptions = {}): Promise<VerityResult> {
  const dataBlockSize = options.dataBlockSize ?? 4096;
  const hashBlockSize = options.hashBlockSize ?? 4096;
  checkBlockSize(dataBlockSize, 'data');
  const size = await fileSize(dataPath);
  if (size === 0 || size % dataBlockSize !== 0) {
    throw new CairnError(
      `${dataPath} is ${size} bytes, not a whole number of ${dataBlockSize}-byte blocks`,
      'dm-verity protects whole blocks: pad the image to a multiple of the data block size',
    );
  }
  const salt = options.salt ?? (await sha256File(dataPath));
  const { superblock, area, result } = await hashDevice({ path: dataPath, offset: 0 }, size / dataBlockSize, {
    ...options,
    salt,
    dataBlockSize,
    hashBlockSize,
  });
  await writeAtomic(hashPath, async (file) => {
    for (const part of [superblock, area]) await file.write(part);
  });
  return result;
}

/**
 * The hash device of `dataBlocks` blocks at a region (a slot partition the agent just wrote): its
 * superblock block and tree, in memory (about 1/128 of the data).
 */
export async function hashDevice(
  data: Region,
  dataBlocks: number,
  options: VerityOptions & { salt: Buffer },
): Promise<{ superblock: Buffer; area: Buffer; result: VerityResult }> {
  const dataBlockSize = options.dataBlockSize ?? 4096;
  const hashBlockSize = options.hashBlockSize ?? 4096;
  checkBlockSize(dataBlockSize, 'data');
  const layout = verityLayout(dataBlocks, dataBlockSize, hashBlockSize);
  const { salt } = options;
  const uuid = options.uuid ?? uuidFromSalt(salt);
  const superblock = encodeSuperblock({ uuid, algorithm: ALGORITHM, dataBlockSize, hashBlockSize, dataBlocks: layout.dataBlocks, salt });
  const { area, root } = await buildTree(data, layout, salt);
  return {
    superblock,
    area,
    result: {
      rootHash: root.toString('hex'),
      salt: salt.toString('hex'),
      uuid,
      dataBlocks: layout.dataBlocks,
      dataBlockSize,
      hashBlockSize,
      hashSize: layout.hashDeviceSize,
    },
  };
}

async function fileSize(path: string): Promise<number> {
  const file = await open(path, 'r');
  try {
    return (await file.stat()).size;
  } finally {
    await file.close();
  }
}

export type VerityCheck =
  { ok: true; superblock: VeritySuperblock } | { ok: false; problem: 'superblock' | 'hash-block' | 'data-block' | 'short'; block?: number; message: string };

const HEX_DIGEST = /^[0-9a-f]{64}$/;

function rootHashBytes(rootHash: string): Buffer {
  if (!HEX_DIGEST.test(rootHash))
    throw new CairnError(`not a sha256 root hash: ${JSON.stringify(rootHash)}`, 'expected the 64 lower-case hex digits of a verity root hash');
  return Buffer.from(rootHash, 'hex');
}

/** Bytes within a file or device: a partition of a disk. */
export interface Region {
  path: string;
  offset: number;
  /** Bytes available (default: to the end of the file). */
  size?: number;
}

function describeRegion(r: Region): string {
  return r.offset === 0 && r.size === undefined ? r.path : `${r.path}@${r.offset}`;
}

/**
 * Checks `dataPath` against the hash device `hashPath` and a trusted root hash the way the
 * kernel does: each hash block against its parent, starting at the root, then every data block
 * against its digest. Reports the first bad block (its index in its own device). The data and
 * hash files may be longer than the image (whole partitions); a Region reads a partition inside
 * a disk (an image file, or a block device, whose size stat does not tell).
 */
export async function verifyImage(data: string | Region, hash: string | Region, rootHash: string): Promise<VerityCheck> {
  const expectedRoot = rootHashBytes(rootHash);
  const dataRegion = typeof data === 'string' ? { path: data, offset: 0 } : data;
  const hashRegion = typeof hash === 'string' ? { path: hash, offset: 0 } : hash;
  const dataPath = describeRegion(dataRegion);
  const hashPath = describeRegion(hashRegion);
  const hashFile = await open(hashRegion.path, 'r');
  let superblock: VeritySuperblock;
  let layout: VerityLayout;
  let area: Buffer;
  try {
    const head = Buffer.alloc(4096);
    const got = await readFull(hashFile, head, Math.min(head.length, hashRegion.size ?? head.length), hashRegion.offset);
    try {
      superblock = parseSuperblock(head.subarray(0, got), hashPath);
      layout = verityLayout(superblock.dataBlocks, superblock.dataBlockSize, superblock.hashBlockSize);
    } catch (err) {
      if (err instanceof CairnError) return { ok: false, problem: 'superblock', message: err.message };
      throw err;
    }
    area = Buffer.alloc(layout.hashDeviceSize - layout.hashBlockSize);
    const read = await readFull(hashFile, area, area.length, hashRegion.offset + layout.hashBlockSize);
    if (read < area.length)
      return { ok: false, problem: 'short', message: `${hashPath} holds ${layout.hashBlockSize + read} bytes, the tree needs ${layout.hashDeviceSize}` };
  } finally {
    await hashFile.close();
  }
  const dataNeeded = layout.dataBlocks * layout.dataBlockSize;
  if ((dataRegion.size ?? (await fileSize(dataRegion.path))) < dataNeeded || (hashRegion.size !== undefined && hashRegion.size < layout.hashDeviceSize)) {
    return { ok: false, problem: 'short', message: `${dataPath} is shorter than the ${dataNeeded} bytes its hash tree covers` };
  }
  const { salt } = superblock;
  const hashBlock = (position: number) => area.subarray((position - 1) * layout.hashBlockSize, position * layout.hashBlockSize);
  const badHash = (position: number): VerityCheck => ({
    ok: false,
    problem: 'hash-block',
    block: position,
    message: `${hashPath}: hash block ${position} does not match its parent`,
  });

  if (layout.levels.length === 0) {
    let root: Buffer = Buffer.alloc(0);
    await forEachBlock(
      dataRegion.path,
      layout.dataBlockSize,
      1,
      (block) => {
        root = digest(salt, block);
      },
      dataRegion.offset,
    );
    return root.equals(expectedRoot)
      ? { ok: true, superblock }
      : { ok: false, problem: 'data-block', block: 0, message: `${dataPath}: data block 0 does not match the root hash` };
  }
  const top = layout.levels.at(-1)!.firstBlock;
  if (!digest(salt, hashBlock(top)).equals(expectedRoot)) return badHash(top);
  for (let level = layout.levels.length - 1; level >= 1; level--) {
    const below = layout.levels[level - 1]!;
    for (let index = 0; index < below.blocks; index++) {
      const at = entryOffset(layout, level, index);
      const position = below.firstBlock + index;
      if (!digest(salt, hashBlock(position)).equals(area.subarray(at, at + DIGEST_SIZE))) return badHash(position);
    }
  }
  let firstBad = -1;
  await forEachBlock(
    dataRegion.path,
    layout.dataBlockSize,
    layout.dataBlocks,
    (block, index) => {
      if (firstBad >= 0) return;
      const at = entryOffset(layout, 0, index);
      if (!digest(salt, block).equals(area.subarray(at, at + DIGEST_SIZE))) firstBad = index;
    },
    dataRegion.offset,
  );
  if (firstBad >= 0) return { ok: false, problem: 'data-block', block: firstBad, message: `${dataPath}: data block ${firstBad} does not match the hash tree` };
  return { ok: true, superblock };
}

/**
 * Partition UUIDs the Discoverable Partitions Specification derives from a verity root hash:
 * the usr partition takes its first 128 bits, the usr-verity partition its last 128 bits. The
 * initramfs finds the slot that holds a release by these alone.
 */
export function verityPartitionUuids(rootHash: string): { usr: string; usrVerity: string } {
  const bytes = rootHashBytes(rootHash);
  return { usr: formatUuid(bytes.subarray(0, 16)), usrVerity: formatUuid(bytes.subarray(16, 32)) };
}

/** The kernel command line argument that names the /usr a UKI boots. */
export function usrHashArgument(rootHash: string): string {
  rootHashBytes(rootHash);
  return `usrhash=${rootHash}`;
}

/**
 * The dm-verity target parameters (the table line after "<start> <length> verity") for the
 * devices holding a build; the hash tree starts after the superblock block.
 */
export function dmVerityParameters(verity: VerityResult, dataDevice: string, hashDevice: string): string {
  return [1, dataDevice, hashDevice, verity.dataBlockSize, verity.hashBlockSize, verity.dataBlocks, 1, ALGORITHM, verity.rootHash, verity.salt].join(' ');
}
