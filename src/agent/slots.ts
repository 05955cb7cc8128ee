// Which A/B slot this host runs and which one an update may overwrite. The running kernel names its
// /usr only by `usrhash=` (the UKI names no slot), and a slot's partition UUIDs spell the root hash
// of the release written into it (DPS), so the GPT tells the slots apart without any state file.
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import { deviceOf, findBootDisk } from '../image/block-device.js';
import { readGpt, type GptLayout, type GptPartition } from '../image/gpt.js';
import { verityPartitionUuids } from '../image/verity.js';

export type SlotName = 'A' | 'B';

export interface Slot {
  name: SlotName;
  usr: GptPartition;
  verity: GptPartition;
}

export interface SlotStatus {
  /** The disk the slots were read from, e.g. /dev/vda. */
  disk: string;
  usrHash: string;
  running: Slot;
  /** The slot an update writes: never the running one. */
  inactive: Slot;
}

const ROOT_HASH = /^[0-9a-f]{64}$/;

/**
 * The root hash in a kernel command line, read the way cairn's initramfs reads it: words split on
 * white space with double quotes grouping, nothing after `--`, the last usrhash= winning.
 * Undefined when there is none; an error when it is malformed (the initramfs would have refused it).
 */
export function usrHashFromCmdline(cmdline: string): string | undefined {
  let found: string | undefined;
  for (const word of cmdlineWords(cmdline)) {
    if (word === '--') break;
    if (!word.startsWith('usrhash=')) continue;
    const value = word.slice('usrhash='.length).toLowerCase();
    if (!ROOT_HASH.test(value))
      throw new CairnError(`usrhash=${value.slice(0, 80)} on the kernel command line is not a sha256 root hash`, 'the UKI is not one cairn built');
    found = value;
  }
  return found;
}

function cmdlineWords(cmdline: string): string[] {
  const words: string[] = [];
  let word = '';
  let quoted = false;
  let inWord = false;
  for (const ch of cmdline) {
    if (ch === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The root hash of the running /usr, from the kernel command line at `cmdlinePath`. */
export async function runningUsrHash(cmdlinePath = '/proc/cmdline'): Promise<string> {
  const hash = usrHashFromCmdline(await readFile(cmdlinePath, 'utf8'));
  if (!hash)
    throw new CairnError(`no usrhash= in ${cmdlinePath}: this system did not boot a cairn image`, 'the agent runs only on hosts booted from a cairn UKI');
  return hash;
}

/** Slots A and B by their partition labels (usr-A, usr-A-verity, usr-B, usr-B-verity). */
export function slotsOf(layout: GptLayout, disk: string): Record<SlotName, Slot> {
  const byLabel = (label: string): GptPartition => {
    const found = layout.partitions.filter((p) => p.label === label);
    if (found.length !== 1) {
      throw new CairnError(
        `${disk} has ${found.length === 0 ? 'no partition' : `${found.length} partitions`} labelled ${label}`,
        'the agent updates disks laid out by cairn (esp, usr-A, usr-A-verity, usr-B, usr-B-verity, root)',
      );
    }
    return found[0]!;
  };
  const slot = (name: SlotName): Slot => ({ name, usr: byLabel(`usr-${name}`), verity: byLabel(`usr-${name}-verity`) });
  const slots = { A: slot('A'), B: slot('B') };
  // An update copies a release from one slot's size to the other's: they must match.
  if (
    slots.A.usr.size !== slots.B.usr.size ||
    slots.A.verity.size !== slots.B.verity.size ||
    slots.A.usr.type !== slots.B.usr.type ||
    slots.A.verity.type !== slots.B.verity.type
  ) {
    throw new CairnError(`${disk}: slots A and B differ in partition size or type`, 'the two slots must be twins; re-provision the disk with cairn');
  }
  return slots;
}

/** Which slot holds the release whose root hash is `usrHash`: its usr and verity UUIDs spell the hash. */
export function identifySlots(layout: GptLayout, usrHash: string, disk: string): SlotStatus {
  const slots = slotsOf(layout, disk);
  const want = verityPartitionUuids(usrHash);
  const matching = (['A', 'B'] as const).filter((n) => slots[n].usr.uuid === want.usr && slots[n].verity.uuid === want.usrVerity);
  if (matching.length !== 1) {
    // GPT partition UUIDs are unique, so two matches would mean a damaged table.
    throw new CairnError(
      `${disk}: no slot holds the running /usr (usrhash=${usrHash} wants usr PARTUUID ${want.usr} and verity ${want.usrVerity})`,
      'the host did not boot from this disk, or its partition table was changed after boot',
    );
  }
  const running = slots[matching[0]!];
  return { disk, usrHash, running, inactive: slots[running.name === 'A' ? 'B' : 'A'] };
}

export interface DetectOptions {
  /** The boot disk; found from the device `usrMount` is on when not given. */
  disk?: string;
  /** The kernel command line file (default /proc/cmdline). */
  cmdline?: string;
  usrMount?: string;
  sysfs?: string;
}

/** Reads the GPT of the boot disk and tells the running slot from the inactive one. */
export async function detectSlots(options: DetectOptions = {}): Promise<SlotStatus> {
  const usrHash = await runningUsrHash(options.cmdline);
  const disk = options.disk ?? (await findBootDisk(await deviceOf(options.usrMount ?? '/usr'), options.sysfs));
  return identifySlots(await readGpt(disk), usrHash, disk);
}
