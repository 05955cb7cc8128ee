// disk.raw in the formats platforms take, converted by qemu-img: qcow2 (QEMU, OpenStack), VMDK
// (VMware; stream-optimized, as OVAs carry it), VHD (Hyper-V, Azure; fixed and 1 MiB aligned, as
// Azure requires). qemu-img puts a random CID in a VMDK and the time and a random UUID in a VHD
// footer; cairn sets those fields from the image itself so a build stays bit-identical.
import { createHash } from 'node:crypto';
import { mkdtemp, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { runTool } from '../host-tool.js';
import { sha256File } from '../hash-file.js';

export const DISK_FORMATS = {
  raw: { file: 'disk.raw', args: [] as string[] },
  qcow2: { file: 'disk.qcow2', args: ['-O', 'qcow2'] },
  vmdk: { file: 'disk.vmdk', args: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'] },
  vhd: { file: 'disk.vhd', args: ['-O', 'vpc', '-o', 'subformat=fixed,force_size=on'] },
} as const;
export type DiskFormat = keyof typeof DISK_FORMATS;
export const DISK_FORMAT_NAMES = Object.keys(DISK_FORMATS) as DiskFormat[];

/** Seconds from the Unix epoch to the VHD epoch (2000-01-01T00:00:00Z). */
const VHD_EPOCH = 946_684_800;

/** The VHD footer (the file's last 512 bytes): its time stamp and unique id from the build, its checksum again. */
async function settleVhd(path: string, seed: Buffer, sourceDateEpoch: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const { size } = await file.stat();
    const footer = Buffer.alloc(512);
    await file.read(footer, 0, 512, size - 512);
    if (footer.toString('latin1', 0, 8) !== 'conectix') throw new CairnError(`${path}: qemu-img wrote no VHD footer`);
    footer.writeUInt32BE(Math.max(0, sourceDateEpoch - VHD_EPOCH), 24);
    seed.copy(footer, 68, 0, 16);
    footer.writeUInt32BE(0, 64);
    let sum = 0;
    for (const byte of footer) sum += byte;
    footer.writeUInt32BE(~sum >>> 0, 64);
    await file.write(footer, 0, 512, size - 512);
    await file.sync();
  } finally {
    await file.close();
  }
}

/**
 * The VMDK descriptor's CID, from the build instead of chance. The descriptor is text in a fixed
 * area the sparse header points to (offset and size in sectors), padded with NULs; qemu-img writes
 * the CID unpadded, so the text is written again whole.
 */
async function settleVmdk(path: string, seed: Buffer): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const header = Buffer.alloc(512);
    await file.read(header, 0, 512, 0);
    if (header.toString('latin1', 0, 4) !== 'KDMV') throw new CairnError(`${path}: not a sparse VMDK`);
    const offset = Number(header.readBigUInt64LE(28)) * 512;
    const size = Number(header.readBigUInt64LE(36)) * 512;
    const area = Buffer.alloc(size);
    await file.read(area, 0, size, offset);
    const text = area.toString('latin1').replace(/\0+$/, '');
    if (!/\nCID=[0-9a-f]{1,8}\n/.test(text)) throw new CairnError(`${path}: no CID in the VMDK descriptor`);
    const settled = Buffer.alloc(size);
    const written = settled.write(text.replace(/\nCID=[0-9a-f]{1,8}\n/, `\nCID=${seed.toString('hex').slice(0, 8)}\n`), 'latin1');
    if (written >= size) throw new CairnError(`${path}: the VMDK descriptor does not fit its area`);
    await file.write(settled, 0, size, offset);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Converts `raw` (disk.raw) to `format` beside it; returns the new file's path. */
export async function convertDisk(raw: string, format: Exclude<DiskFormat, 'raw'>, outDir: string, sourceDateEpoch: number): Promise<string> {
  const { file, args } = DISK_FORMATS[format];
  const target = join(outDir, file);
  // Converted under its final name (a VMDK names its own file inside), in a folder of its own.
  const work = await mkdtemp(join(outDir, `.${format}-`));
  const tmp = join(work, file);
  try {
    await runTool('qemu-img', ['convert', '-f', 'raw', ...args, raw, tmp]);
    const seed = createHash('sha256')
      .update(`cairn-disk-id/1:${(await sha256File(raw)).toString('hex')}`)
      .digest();
    if (format === 'vhd') await settleVhd(tmp, seed, sourceDateEpoch);
    if (format === 'vmdk') await settleVmdk(tmp, seed);
    await rename(tmp, target);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return target;
}
