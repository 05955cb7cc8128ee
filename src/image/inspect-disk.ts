// What is on a disk image, read straight from the file (no loop device): the GPT's partitions
// by their Discoverable Partitions names, and the boot entries in the ESP's EFI/Linux.
import { basename } from 'node:path';
import { runTool } from '../host-tool.js';
import { readGpt } from './gpt.js';
import { ESP_TYPE, partitionTypes } from './partition-types.js';

export interface DiskPartition {
  number: number;
  label: string;
  type: string;
  typeName: string;
  uuid: string;
  start: number;
  size: number;
}

export interface DiskReport {
  path: string;
  size: number;
  partitions: DiskPartition[];
  /** File names in the ESP's EFI/Linux, boot counter suffix included. */
  ukis: string[];
}

function typeNames(arch: string): Map<string, string> {
  const names = new Map([[ESP_TYPE, 'esp']]);
  // An unknown architecture is the manifest's problem, not a reason to hide the layout.
  try {
    const t = partitionTypes(arch);
    names.set(t.usr, `usr-${arch}`).set(t.usrVerity, `usr-verity-${arch}`).set(t.root, `root-${arch}`);
  } catch {
    /* the GUIDs are shown instead */
  }
  return names;
}

/** The ESP's EFI/Linux listing, read with mtools from the image at the ESP's offset. */
async function listUkis(disk: string, espOffset: number): Promise<string[]> {
  const out = await runTool('mdir', ['-b', '-i', `${disk}@@${espOffset}`, '::EFI/Linux'], { MTOOLS_SKIP_CHECK: '1' });
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => basename(line.trim()))
    .sort();
}

export async function inspectDisk(path: string, arch: string): Promise<DiskReport> {
  const layout = await readGpt(path);
  const names = typeNames(arch);
  const partitions = layout.partitions.map((p) => ({
    number: p.number,
    label: p.label,
    type: p.type,
    typeName: names.get(p.type) ?? p.type,
    uuid: p.uuid,
    start: p.offset,
    size: p.size,
  }));
  const esp = layout.partitions.find((p) => p.type === ESP_TYPE);
  return { path, size: layout.diskSize, partitions, ukis: esp ? await listUkis(path, esp.offset) : [] };
}
