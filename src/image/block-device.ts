// Block devices as sysfs shows them: the device a path is on, the disk beneath a partition or a
// device-mapper device, partition names. The agent finds its boot disk this way, provisioning the
// disk its root grows on.
import { readdir, readlink, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CairnError } from '../errors.js';

export interface DeviceNumber {
  major: number;
  minor: number;
}

/** The block device a path is on (st_dev): for /usr, the dm-verity device the initramfs set up. */
export async function deviceOf(path: string): Promise<DeviceNumber> {
  const dev = (await stat(path, { bigint: true })).dev;
  // glibc's gnu_dev_major/gnu_dev_minor split.
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn)),
  };
}

/**
 * The disk holding a block device, as /dev/NAME: for a device-mapper device (dm-verity over a
 * slot) the disk of the partitions beneath it, for a partition its parent disk. Walks sysfs under
 * `sysfs`; every partition beneath must be on one disk.
 */
export async function findBootDisk(device: DeviceNumber, sysfs = '/sys'): Promise<string> {
  const id = `${device.major}:${device.minor}`;
  const name = await blockName(join(sysfs, 'dev/block', id), id);
  const disks = new Set<string>();
  const visit = async (dev: string, depth: number): Promise<void> => {
    if (depth > 8) throw new CairnError(`block device ${dev}: device-mapper stacking deeper than 8 levels`);
    const slaves = await readdir(join(sysfs, 'class/block', dev, 'slaves')).catch((): string[] => []);
    if (slaves.length > 0) {
      for (const slave of slaves) await visit(slave, depth + 1);
      return;
    }
    disks.add(await diskOf(sysfs, dev));
  };
  await visit(name, 0);
  if (disks.size !== 1) {
    throw new CairnError(
      `block device ${name} (${id}) spans ${disks.size === 0 ? 'no disk' : `disks ${[...disks].join(', ')}`}`,
      'the agent needs both partitions of the running slot on one disk',
    );
  }
  return `/dev/${[...disks][0]}`;
}

/** The kernel's name of the block device behind a sysfs dev/block link. */
export async function blockName(link: string, id: string): Promise<string> {
  try {
    return basename(await readlink(link));
  } catch {
    throw new CairnError(`no block device ${id} in sysfs (${link})`, 'is /usr mounted from a block device, and sysfs mounted at /sys?');
  }
}

/** A partition's parent disk (its sysfs directory is inside the disk's), or the device itself when it is a whole disk. */
async function diskOf(sysfs: string, dev: string): Promise<string> {
  const isPartition = await stat(join(sysfs, 'class/block', dev, 'partition')).then(
    () => true,
    () => false,
  );
  if (!isPartition) return dev;
  const target = await readlink(join(sysfs, 'class/block', dev));
  return basename(join(target, '..'));
}
