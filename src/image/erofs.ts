// The image's /usr as an EROFS filesystem, made with the build host's mkfs.erofs. Everything
// that could differ between two builds of the same tree is pinned: every inode's time is the
// build's SOURCE_DATE_EPOCH (-T), the filesystem UUID comes from the tree's content (or the
// caller), owners and modes come from the tree itself. mkfs.erofs sorts directory entries by
// name whatever order the host's readdir returns, so the layout depends on the names alone.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, open, readdir, readlink, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { CairnError } from '../errors.js';
import { formatUuid } from './verity.js';

const run = promisify(execFile);
const MKFS = 'mkfs.erofs';

export interface UsrImageOptions {
  /** The assembled root tree; its usr/ becomes the image root. */
  rootfs: string;
  output: string;
  sourceDateEpoch: number;
  /** mkfs.erofs compressor, optionally with a level ("lz4hc", "lz4hc,12"), or null for none. */
  compression: string | null;
  /** Filesystem UUID; default: derived from the tree's content. */
  uuid?: string;
}

// Levels mkfs.erofs accepts, so a bad level is reported in recipe terms rather than as mkfs's EINVAL.
const LEVELS: Record<string, [number, number]> = { lz4hc: [0, 12], lzma: [0, 9], deflate: [0, 9] };

/** Compressors the host's mkfs.erofs was built with, from its --help ("Available compressors are: lz4hc, lz4"). */
export async function availableCompressors(): Promise<string[]> {
  // mkfs.erofs prints its help on stderr.
  const { stdout, stderr } = await run(MKFS, ['--help']).catch((err: unknown) => {
    throw missingTool(err);
  });
  const text = `${stdout}\n${stderr}`;
  const line = /Available compressors are:\s*(.*)/.exec(text);
  return line ? line[1]!.split(/[\s,]+/).filter(Boolean) : [];
}

function missingTool(err: unknown): Error {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
    return new CairnError(`${MKFS} is not installed on the build host`, 'install erofs-utils (apt-get install erofs-utils)');
  }
  return err as Error;
}

/** Turns the recipe's compression setting into mkfs.erofs's -z argument, or explains why it cannot. */
export async function compressionArgument(compression: string): Promise<string> {
  const [name, level, ...rest] = compression.split(',');
  const available = await availableCompressors();
  if (!name || !available.includes(name) || rest.length > 0) {
    throw new CairnError(
      `/usr compression ${JSON.stringify(compression)} is not supported by this build host's mkfs.erofs`,
      available.length > 0
        ? `use one of ${available.join(', ')} (optionally with ",<level>"), or null for no compression`
        : 'this mkfs.erofs has no compressors: set usrCompression to null',
    );
  }
  if (level !== undefined) {
    const range = LEVELS[name];
    const value = Number(level);
    if (!range || !/^\d+$/.test(level) || value < range[0] || value > range[1]) {
      throw new CairnError(
        `/usr compression level ${JSON.stringify(level)} is not valid for ${name}`,
        range ? `use a level from ${range[0]} to ${range[1]}, e.g. "${name},${range[1]}"` : `${name} takes no level: write "${name}"`,
      );
    }
  }
  return `-z${compression}`;
}

async function fileSha256(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(size, 1 << 20)));
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}

/**
 * A digest of everything mkfs.erofs reads from the tree (names, types, modes, owners, sizes,
 * contents, link targets, device numbers), walked in sorted order; two trees with the same
 * digest give the same image, so the digest can name the filesystem.
 */
export async function treeDigest(root: string): Promise<Buffer> {
  const records: string[] = [];
  const files: { index: number; path: string; size: number }[] = [];
  const walk = async (dir: string, relative: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    const stats = await Promise.all(names.map((name) => lstat(join(dir, name))));
    for (const [i, name] of names.entries()) {
      const path = join(dir, name);
      const rel = `${relative}/${name}`;
      const st = stats[i]!;
      let record = `${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.rdev}\0`;
      if (st.isSymbolicLink()) record += await readlink(path);
      else if (st.isFile()) files.push({ index: records.length, path, size: st.size });
      records.push(record);
      if (st.isDirectory()) await walk(path, rel);
    }
  };
  const top = await lstat(root);
  records.push(`${top.mode}\0${top.uid}\0${top.gid}\0`);
  await walk(root, '');
  // Contents are hashed a few files at a time: most of a /usr is small files, where waiting
  // on one read at a time would dominate.
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const { index, path, size } = files[next++]!;
      records[index] += await fileSha256(path, size);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const hash = createHash('sha256');
  for (const record of records) hash.update(`${record}\n`);
  return hash.digest();
}

/** A UUID named by the tree's digest (RFC 9562 version 8, cairn's own derivation). */
function uuidFromDigest(digest: Buffer): string {
  const bytes = createHash('sha256').update('cairn erofs uuid\0').update(digest).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x80;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return formatUuid(bytes);
}

const UUID_FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Builds `<rootfs>/usr` into an EROFS image at `output` (atomically: a temp file renamed into place). */
export async function buildUsrImage(options: UsrImageOptions): Promise<{ size: number; uuid: string }> {
  const { rootfs, output, sourceDateEpoch, compression } = options;
  if (!Number.isSafeInteger(sourceDateEpoch) || sourceDateEpoch < 0 || sourceDateEpoch > 0xffffffff) {
    throw new CairnError(`SOURCE_DATE_EPOCH ${sourceDateEpoch} is not usable for the /usr image`, 'use whole seconds since 1970 that fit in 32 bits');
  }
  if (options.uuid !== undefined && !UUID_FORMAT.test(options.uuid)) {
    throw new CairnError(`/usr image UUID ${JSON.stringify(options.uuid)} is not a UUID`, 'write it as 8-4-4-4-12 lower-case hex digits');
  }
  const usr = join(rootfs, 'usr');
  const st = await lstat(usr).catch(() => null);
  if (!st?.isDirectory()) {
    throw new CairnError(`${usr} is not a directory`, 'assemble the root tree first (cairn build does); /usr must be a real directory, not a link');
  }
  const uuid = options.uuid ?? uuidFromDigest(await treeDigest(usr));
  const args = ['--quiet', `-T${sourceDateEpoch}`, `-U${uuid}`, ...(compression === null ? [] : [await compressionArgument(compression)])];
  const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    try {
      // mkfs.erofs reads SOURCE_DATE_EPOCH as a clamp that overrides -T: older files would
      // keep their own times. -T alone gives every inode the build's time.
      const { SOURCE_DATE_EPOCH: _ignored, ...env } = process.env;
      await run(MKFS, [...args, tmp, usr], { env, maxBuffer: 16 << 20 });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      if (stderr === undefined) throw missingTool(err);
      throw new CairnError(
        `${MKFS} failed on ${usr}: ${stderr.split('\n').slice(-3).join(' ')}`,
        'check that the build host has room in the output directory and that the tree is readable',
      );
    }
    const file = await open(tmp, 'r+');
    let size: number;
    try {
      await file.sync();
      size = (await file.stat()).size;
    } finally {
      await file.close();
    }
    await rename(tmp, output);
    return { size, uuid };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
