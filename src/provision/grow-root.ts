// The writable root grows to fill its disk on the first boot (a cloud disk is larger than
// disk.raw): the root partition, the last on the disk, grows to the end and the backup GPT moves
// there (src/image/gpt.ts says in which order); the kernel learns the partition's new size, and
// the mounted ext4 grows online. The A/B slots are not touched, so the agent finds them as before.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { blockName, deviceOf, findBootDisk } from '../image/block-device.js';
import { CairnError } from '../errors.js';
import { growLastPartition, SECTOR } from '../image/gpt.js';

const run = promisify(execFile);

export interface GrowReport {
  disk: string;
  partition: number;
  grown: boolean;
  /** Bytes of the root partition afterwards. */
  size: number;
}

const sysfsNumber = async (path: string): Promise<number> => {
  const text = (await readFile(path, 'utf8')).trim();
  if (!/^\d+$/.test(text)) throw new CairnError(`${path}: "${text}" is not a number`);
  return Number(text);
};

export async function growRoot(mount = '/', sysfs = '/sys'): Promise<GrowReport> {
  const { major, minor } = await deviceOf(mount);
  const partName = await blockName(join(sysfs, 'dev/block', `${major}:${minor}`), `${major}:${minor}`);
  const partition = await sysfsNumber(join(sysfs, 'class/block', partName, 'partition')).catch(() => {
    throw new CairnError(`${mount} is on /dev/${partName}, which is not a partition`);
  });
  const disk = await findBootDisk({ major, minor }, sysfs);
  const diskSize = (await sysfsNumber(join(sysfs, 'class/block', disk.replace(/^\/dev\//, ''), 'size'))) * SECTOR;
  const { grown, layout } = await growLastPartition(disk, partition, diskSize);
  const size = layout.partitions.find((p) => p.number === partition)!.size;
  if (grown) {
    // BLKPG resize: the disk is in use, so the whole table cannot be read again.
    await run('partx', ['--update', '--nr', String(partition), disk]);
  }
  // Online, and a no-op when the file system already fills its partition.
  await run('/usr/lib/systemd/systemd-growfs', [mount]);
  return { disk, partition, grown, size };
}
