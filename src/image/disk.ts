// disk.raw: the GPT of the Design's layout with the build's artifacts copied into their partitions,
// and the writable root file system that goes into it.
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  copyFile,
  type FileHandle,
  lchown,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CairnError } from '../errors.js';
import type { DiskSpec } from '../recipe/types.js';
import { runTool } from '../host-tool.js';
import { MiB, writeGpt, type GptLayout, type GptPartitionSpec } from './gpt.js';
import { ESP_TYPE, GPT_FLAG_READ_ONLY, partitionTypes } from './partition-types.js';
import { formatUuid, verityPartitionUuids } from './verity.js';

/** A UUID that is the same for every build of `parts` (RFC 9562 version 8: custom, hash-based). */
export function stableUuid(...parts: string[]): string {
  const bytes = createHash('sha256')
    .update(`cairn\0${parts.join('\0')}`)
    .digest()
    .subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return formatUuid(bytes);
}

export type DiskSizes = Pick<DiskSpec, 'esp' | 'usr' | 'usrVerity' | 'root'>;

export interface DiskOptions {
  output: string;
  /** The recipe's name: seeds the UUIDs that do not come from content. */
  name: string;
  /** Debian architecture, for the partition types. */
  arch: string;
  sizes: DiskSizes;
  /** Paths of the artifacts that go into slot A, the ESP and the root partition. */
  esp: string;
  usr: string;
  usrVerity: string;
  /** A root file system image, or null to leave the partition zeroed for first boot to format. */
  root: string | null;
  rootHash: string;
}

/** The recipe keys the sizes come from, for messages that say what to change. */
const SIZE_KEYS: Record<keyof DiskSizes, string> = { esp: 'disk.esp', usr: 'disk.usr', usrVerity: 'disk.usr-verity', root: 'disk.root' };
const BLOCK = 4096;

/** Rounded up for artifacts, so one that does not fit never reads as the same size as its partition. */
function mib(bytes: number, round: (x: number) => number): string {
  return `${round((bytes / MiB) * 100) / 100} MiB`;
}

/** The partition list of a cairn disk, in disk order. */
export function diskPartitions(options: Pick<DiskOptions, 'name' | 'arch' | 'sizes' | 'rootHash'>): GptPartitionSpec[] {
  const { name, arch, sizes } = options;
  const types = partitionTypes(arch);
  // Slot A's UUIDs spell the root hash (DPS): the initramfs finds the slot by `usrhash=` alone.
  const slotA = verityPartitionUuids(options.rootHash);
  for (const key of Object.keys(SIZE_KEYS) as (keyof DiskSizes)[]) {
    const size = sizes[key];
    if (!Number.isSafeInteger(size) || size <= 0 || size % BLOCK !== 0) {
      throw new CairnError(`${SIZE_KEYS[key]} is ${size} bytes, not a positive multiple of ${BLOCK}`, `set ${SIZE_KEYS[key]} in the recipe in MiB, e.g. 64MiB`);
    }
  }
  return [
    { label: 'esp', type: ESP_TYPE, uuid: stableUuid(name, 'esp'), size: sizes.esp },
    { label: 'usr-A', type: types.usr, uuid: slotA.usr, size: sizes.usr, attributes: GPT_FLAG_READ_ONLY },
    { label: 'usr-A-verity', type: types.usrVerity, uuid: slotA.usrVerity, size: sizes.usrVerity, attributes: GPT_FLAG_READ_ONLY },
    // The empty slot gets its hash-derived UUIDs when the agent writes a release into it.
    { label: 'usr-B', type: types.usr, uuid: stableUuid(name, 'usr-B'), size: sizes.usr, attributes: GPT_FLAG_READ_ONLY },
    { label: 'usr-B-verity', type: types.usrVerity, uuid: stableUuid(name, 'usr-B-verity'), size: sizes.usrVerity, attributes: GPT_FLAG_READ_ONLY },
    { label: 'root', type: types.root, uuid: stableUuid(name, 'root'), size: sizes.root },
  ];
}

/** 1 MiB before the first partition and after the last: room for both GPT copies, partitions aligned. */
function diskSizeFor(partitions: GptPartitionSpec[]): number {
  return partitions.reduce((total, p) => total + Math.ceil(p.size / MiB) * MiB, MiB) + MiB;
}

const CHUNK = MiB;

/** Copies `source` to `offset`, skipping all-zero chunks so they stay holes in the sparse image. */
async function copyInto(disk: FileHandle, source: string, offset: number): Promise<void> {
  const input = await open(source, 'r');
  const buffer = Buffer.alloc(CHUNK);
  try {
    for (let position = 0; ; position += CHUNK) {
      const { bytesRead } = await input.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (chunk.some((b) => b !== 0)) await disk.write(chunk, 0, bytesRead, offset + position);
    }
  } finally {
    await input.close();
  }
}

/**
 * Writes disk.raw: GPT (ESP, usr-A, usr-A-verity, usr-B, usr-B-verity, root) with the artifacts in
 * the ESP, slot A and root. Checks that everything fits before it writes anything, and replaces
 * `output` only when the disk is complete.
 */
export async function writeDisk(options: DiskOptions): Promise<GptLayout> {
  const partitions = diskPartitions(options);
  const contents: [number, string | null, keyof DiskSizes][] = [
    [0, options.esp, 'esp'],
    [1, options.usr, 'usr'],
    [2, options.usrVerity, 'usrVerity'],
    [5, options.root, 'root'],
  ];
  for (const [, path, key] of contents) {
    if (path === null) continue;
    let size: number;
    try {
      size = (await lstat(path)).size;
    } catch (err) {
      throw new CairnError(`cannot read ${path} for disk.raw: ${(err as Error).message}`);
    }
    if (size > options.sizes[key]) {
      throw new CairnError(
        `${basename(path)} is ${mib(size, Math.ceil)} but ${SIZE_KEYS[key]} is ${mib(options.sizes[key], Math.floor)}: raise ${SIZE_KEYS[key]} in the recipe`,
      );
    }
  }
  const diskSize = diskSizeFor(partitions);
  const tmp = join(dirname(options.output), `.${basename(options.output)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const disk = await open(tmp, 'wx', 0o644);
    let layout: GptLayout;
    try {
      await disk.truncate(diskSize);
      layout = await writeGpt(disk, diskSize, partitions, stableUuid(options.name, 'disk', options.rootHash));
      for (const [index, path] of contents) {
        if (path !== null) await copyInto(disk, path, layout.partitions[index]!.offset);
      }
      await disk.sync();
    } finally {
      await disk.close();
    }
    await rename(tmp, options.output);
    return layout;
  } finally {
    await rm(tmp, { force: true });
  }
}

export interface RootFsOptions {
  output: string;
  size: number;
  sourceDateEpoch: number;
  /** The recipe's name: seeds the file system UUID and directory hash seed. */
  name: string;
  /**
   * The assembled root tree: its top level (the usr-merge symlinks, mount points, /var) becomes
   * the root file system's; /usr, /etc and /boot stay empty, /usr is mounted from the slot and
   * /etc filled from /usr/share/factory/etc on first boot. Null for a file system with only lost+found.
   */
  tree: string | null;
}

const EMPTY_IN_ROOT = new Set(['usr', 'etc', 'boot']);
/** debugfs reads commands as words; names it cannot quote have no place in a root skeleton. */
const DEBUGFS_SAFE = /^[A-Za-z0-9._+@:,=-]+$/;

/** Copies the skeleton into `staging`, returning every path in it (relative, parents first). */
async function stageSkeleton(tree: string, staging: string, sourceDateEpoch: number): Promise<string[]> {
  const paths: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    const names = (await readdir(join(tree, relative))).sort();
    for (const name of names) {
      const path = relative === '' ? name : `${relative}/${name}`;
      if (!DEBUGFS_SAFE.test(name))
        throw new CairnError(
          `${join(tree, path)}: cairn cannot put this name into the root file system`,
          'keep names outside /usr to letters, digits and ._+@:,=-',
        );
      const source = join(tree, path);
      const target = join(staging, path);
      const info = await lstat(source);
      if (info.isDirectory()) await mkdir(target);
      else if (info.isSymbolicLink()) await symlink(await readlink(source), target);
      else if (info.isFile()) await copyFile(source, target);
      else throw new CairnError(`${source}: only directories, files and symlinks can go into the root file system`);
      // Owner before mode: a chown clears set-id bits. The mode explicitly, past the umask (1777 on /tmp).
      await lchown(target, info.uid, info.gid);
      if (!info.isSymbolicLink()) await chmod(target, info.mode & 0o7777);
      paths.push(path);
      if (info.isDirectory() && !(relative === '' && EMPTY_IN_ROOT.has(name))) await walk(path);
    }
  };
  await walk('');
  // Only once all exist: creating an entry moves its directory's times.
  for (const path of paths) await lutimes(join(staging, path), sourceDateEpoch, sourceDateEpoch);
  return paths;
}

/**
 * Makes the ext4 root file system image reproducibly: fixed UUID, hash seed and times
 * (E2FSPROGS_FAKE_TIME), no build-host mke2fs.conf, and the inode times mke2fs -d copies from the
 * staged files (ctime and atime cannot be set on the host) reset with debugfs.
 */
export async function makeRootFs(options: RootFsOptions): Promise<void> {
  const { output, size, sourceDateEpoch, name } = options;
  if (!Number.isSafeInteger(size) || size % BLOCK !== 0 || size < 8 * MiB) {
    throw new CairnError(
      `disk.root is ${size} bytes; the root file system needs a multiple of ${BLOCK} bytes and at least 8 MiB`,
      'set disk.root in the recipe, e.g. 256MiB',
    );
  }
  const dir = dirname(output);
  const staging = await mkdtemp(join(dir, '.root-staging-'));
  const image = join(dir, `.${basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
  const env = { E2FSPROGS_FAKE_TIME: String(sourceDateEpoch), MKE2FS_CONFIG: '/dev/null', TZ: 'UTC' };
  try {
    const skeleton = join(staging, 'root');
    await mkdir(skeleton);
    const paths = options.tree === null ? [] : await stageSkeleton(options.tree, skeleton, sourceDateEpoch);
    const handle = await open(image, 'wx', 0o644);
    try {
      await handle.truncate(size);
    } finally {
      await handle.close();
    }
    await runTool(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-t',
        'ext4',
        '-b',
        String(BLOCK),
        '-I',
        '256',
        '-i',
        '16384',
        '-L',
        'root',
        '-O',
        'has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum',
        '-U',
        stableUuid(name, 'root-fs'),
        '-E',
        `hash_seed=${stableUuid(name, 'root-fs-hash-seed')},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0`,
        '-d',
        skeleton,
        image,
      ],
      env,
    );
    if (paths.length > 0) {
      const commands = paths.flatMap((p) => [`sif /${p} ctime @${sourceDateEpoch}`, `sif /${p} atime @${sourceDateEpoch}`]);
      const script = join(staging, 'debugfs.cmds');
      await writeFile(script, commands.join('\n') + '\n');
      await runTool('debugfs', ['-w', '-f', script, image], env);
    }
    await runTool('e2fsck', ['-fn', image], env);
    await rename(image, output);
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(image, { force: true });
  }
}
