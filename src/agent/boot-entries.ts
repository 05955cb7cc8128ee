// The boot entries on the ESP: UKIs in EFI/Linux named by the Boot Loader Specification with
// Automatic Boot Assessment. `NAME+LEFT-DONE.efi` has LEFT tries left after DONE failed ones,
// `NAME+LEFT.efi` means DONE 0, `NAME.efi` (no counter) is blessed. systemd-boot renames
// `+3` to `+2-1` before it boots an entry, sorts entries with no tries left last, and so boots
// the previous release once a new one has failed three times. The agent installs new entries,
// removes old ones and blesses a boot that passed its health checks.
//
// FAT has no atomic replace and no journal, so every change is one step whose every outcome boots:
// - install writes `.<final name>.<random>.tmp` (hidden, and not ending in .efi, so systemd-boot
//   never considers it), fsyncs it, renames it to its final name and fsyncs the directory. A cut
//   before the rename leaves a temp file and no entry; a cut inside it leaves the old name, the new
//   one, or, FAT writing the new directory entry before clearing the old, both names for the same
//   clusters. The entry is complete whenever its name exists.
// - remove and bless are one unlink or rename each: before or after, or (bless) both names.
// - every rename is followed by an fsync of the file under its new name (renameDurably): vfat
//   fills in the new directory entry's size and cluster only then.
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CairnError } from '../errors.js';
import { renameDurably, syncDirectory, writeAtomic } from '../fs-atomic.js';
import { sha256File } from '../hash-file.js';
import { ukiFileName } from '../image/esp.js';
import { usrHashFromCmdline } from './slots.js';
import { readUkiCmdline } from './uki-cmdline.js';

/** Where Boot Loader Specification type #2 entries (UKIs) live on the ESP. */
export const ENTRY_DIR = 'EFI/Linux';
/** systemd-boot's record of the entry it booted (vendor GUID 4a67b082-…, the Boot Loader Interface). */
export const LOADER_ENTRY_SELECTED = '/sys/firmware/efi/efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';
export const DEFAULT_TRIES = 3;
/** Where an ESP is mounted when the configuration names none, in the order they are tried. */
export const ESP_CANDIDATES = ['/efi', '/boot/efi'];

/** systemd-boot ignores counters above INT_MAX. */
const MAX_COUNTER = 2 ** 31 - 1;

export interface EntryName {
  /** The entry's name without counter and .efi: the same through every rename. */
  id: string;
  /** null: no counter, the entry is blessed (or never had one). */
  triesLeft: number | null;
  triesDone: number | null;
}

export type EntryStatus = 'blessed' | 'counting' | 'exhausted';

export interface BootEntry extends EntryName {
  /** The file name in EFI/Linux. */
  file: string;
  path: string;
  status: EntryStatus;
  /** From an id of the form NAME_VERSION (how cairn names its UKIs); null for any other UKI. */
  name: string | null;
  version: string | null;
}

/**
 * Splits a UKI file name the way systemd-boot does: the counter follows the last "+" and must
 * run to the .efi suffix, or the name has none. Undefined for names that are not .efi.
 */
export function parseEntryName(file: string): EntryName | undefined {
  if (!/\.efi$/i.test(file) || file.length <= 4) return undefined;
  const stem = file.slice(0, -4);
  const plus = stem.lastIndexOf('+');
  const counter = plus === -1 ? null : /^([0-9]+)(?:-([0-9]+))?$/.exec(stem.slice(plus + 1));
  if (counter) {
    const left = Number(counter[1]);
    const done = counter[2] === undefined ? 0 : Number(counter[2]);
    if (left <= MAX_COUNTER && done <= MAX_COUNTER) return { id: stem.slice(0, plus), triesLeft: left, triesDone: done };
  }
  return { id: stem, triesLeft: null, triesDone: null };
}

function toEntry(dir: string, file: string, parsed: EntryName): BootEntry {
  const split = parsed.id.indexOf('_');
  const status: EntryStatus = parsed.triesLeft === null ? 'blessed' : parsed.triesLeft === 0 ? 'exhausted' : 'counting';
  return {
    ...parsed,
    file,
    path: join(dir, file),
    status,
    name: split > 0 ? parsed.id.slice(0, split) : null,
    version: split > 0 && split < parsed.id.length - 1 ? parsed.id.slice(split + 1) : null,
  };
}

/** The UKIs systemd-boot would consider (visible .efi files in EFI/Linux), by id. */
export async function listEntries(esp: string): Promise<BootEntry[]> {
  const dir = join(esp, ENTRY_DIR);
  const entries: BootEntry[] = [];
  for (const item of await readdir(dir, { withFileTypes: true }).catch(notFoundAs([]))) {
    if (!item.isFile() || item.name.startsWith('.')) continue;
    const parsed = parseEntryName(item.name);
    if (parsed) entries.push(toEntry(dir, item.name, parsed));
  }
  return entries.sort((a, b) => compare(a.id, b.id) || compare(a.file, b.file));
}

/** The entries of one release of image `name` (FAT and systemd-boot compare names without case). */
export function entriesOf(entries: readonly BootEntry[], name: string, version: string): BootEntry[] {
  const id = `${name}_${version}`.toLowerCase();
  return entries.filter((e) => e.id.toLowerCase() === id);
}

export interface InstallOptions {
  name: string;
  version: string;
  tries?: number;
}

/**
 * Installs `uki` as `<name>_<version>+<tries>.efi`, through a temp name systemd-boot ignores.
 * Idempotent: when that very file is already there with the same content (an earlier run was cut
 * after the rename), it is kept; any other entry of the release is replaced, so the new entry
 * starts with a full counter.
 */
export async function installUki(esp: string, uki: string, options: InstallOptions): Promise<BootEntry> {
  const tries = options.tries ?? DEFAULT_TRIES;
  if (!Number.isInteger(tries) || tries < 1 || tries > 9) throw new CairnError(`boot tries ${tries} is not a whole number from 1 to 9`);
  const file = ukiFileName(options.name, options.version, tries);
  const dir = join(esp, ENTRY_DIR);
  await mkdir(dir, { recursive: true });
  const existing = entriesOf(await listEntries(esp), options.name, options.version);
  const same = existing.find((e) => e.file === file);
  if (same && (await sha256File(same.path)).equals(await sha256File(uki))) return same;
  for (const entry of existing) await removeEntry(entry);
  try {
    await writeAtomic(join(dir, file), async (handle) => {
      for await (const chunk of createReadStream(uki, { highWaterMark: 1 << 20 })) await handle.write(chunk as Buffer);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') {
      const size = (await stat(uki)).size;
      throw new CairnError(`the ESP at ${esp} has no room for ${file} (${size} bytes)`, 'remove stale files from the ESP or give it more space');
    }
    throw err;
  }
  return toEntry(dir, file, parseEntryName(file)!);
}

/** Removes an entry; gone already is fine. */
export async function removeEntry(entry: BootEntry): Promise<void> {
  await unlink(entry.path).catch(notFoundAs(undefined));
  await syncDirectory(dirname(entry.path));
}

/** Drops the counter from the entry's name (the Automatic Boot Assessment "good" mark). */
export async function blessEntry(entry: BootEntry): Promise<BootEntry> {
  if (entry.triesLeft === null) return entry;
  const dir = dirname(entry.path);
  const file = `${entry.id}.efi`;
  await renameDurably(entry.path, join(dir, file));
  return toEntry(dir, file, parseEntryName(file)!);
}

export interface Leftover {
  file: string;
  /** The entry file the temp file was written for. */
  target: string;
}

/**
 * Temp files an install left when it was cut (writeAtomic names them `.<file>.<hex>.tmp`). One whose release has no entry is removed; one
 * beside its entry is kept, since a rename cut on FAT can leave both names on the same clusters,
 * and removing one name would free the entry's data (`fsck.fat` separates them).
 */
export async function cleanLeftovers(esp: string): Promise<{ removed: Leftover[]; kept: Leftover[] }> {
  const dir = join(esp, ENTRY_DIR);
  const ids = new Set((await listEntries(esp)).map((e) => e.id.toLowerCase()));
  const removed: Leftover[] = [];
  const kept: Leftover[] = [];
  for (const file of await readdir(dir).catch(notFoundAs([] as string[]))) {
    const match = /^\.(.+\.efi)\.[0-9a-f]+\.tmp$/i.exec(file);
    const target = match ? parseEntryName(match[1]!) : undefined;
    if (!match || !target) continue;
    const leftover = { file, target: match[1]! };
    if (ids.has(target.id.toLowerCase())) {
      kept.push(leftover);
    } else {
      await unlink(join(dir, file)).catch(notFoundAs(undefined));
      removed.push(leftover);
    }
  }
  if (removed.length > 0) await syncDirectory(dir);
  return { removed, kept };
}

export interface BootedEntry {
  entry: BootEntry;
  /** How it was found: systemd-boot's LoaderEntrySelected, or the running usrhash in the UKI's command line. */
  source: 'loader' | 'usrhash';
}

export interface BootedOptions {
  /** The LoaderEntrySelected variable file. */
  efivar?: string;
  /** The running root hash, for the fallback when the variable is missing or names no entry here. */
  usrHash?: string;
}

/** The entry this boot came from, or undefined when neither the boot loader nor a UKI says. */
export async function bootedEntry(esp: string, options: BootedOptions = {}): Promise<BootedEntry | undefined> {
  const entries = await listEntries(esp);
  const selected = await loaderEntrySelected(options.efivar ?? LOADER_ENTRY_SELECTED);
  if (selected !== undefined) {
    // The id is the file name as it was when systemd-boot read it (before counting down), lower-cased.
    const parsed = parseEntryName(selected.replace(/@[0-9]+$/, ''));
    const found = parsed ? preferBlessed(entries.filter((e) => e.id.toLowerCase() === parsed.id.toLowerCase())) : undefined;
    if (found) return { entry: found, source: 'loader' };
  }
  if (options.usrHash === undefined) return undefined;
  const matching: BootEntry[] = [];
  for (const entry of entries) {
    const cmdline = await readUkiCmdline(entry.path);
    if (cmdline !== undefined && safeUsrHash(cmdline) === options.usrHash) matching.push(entry);
  }
  const found = preferBlessed(matching);
  return found ? { entry: found, source: 'usrhash' } : undefined;
}

/** Whether this boot is still on trial: its entry has a counter, so it has not been blessed. */
export function isTrialBoot(booted: BootEntry): boolean {
  return booted.triesLeft !== null;
}

/**
 * The value of systemd-boot's LoaderEntrySelected: efivarfs files hold 4 bytes of attributes, then
 * the UTF-16LE string with its terminating NUL. Undefined when there is no such variable.
 */
export async function loaderEntrySelected(path = LOADER_ENTRY_SELECTED): Promise<string | undefined> {
  const data = await readFile(path).catch(notFoundAs(undefined));
  if (!data) return undefined;
  if (data.length < 4 || data.length > 4 + 2 * 1024 || (data.length - 4) % 2 !== 0) {
    throw new CairnError(`${path}: ${data.length} bytes is not a UTF-16 boot entry id`, 'the firmware variable is damaged; it is rewritten at the next boot');
  }
  const text = data.subarray(4).toString('utf16le');
  const end = text.indexOf('\0');
  return end === -1 ? text : text.slice(0, end);
}

/** Where the ESP is mounted: the configured path, or the first candidate holding an EFI folder. */
export async function locateEsp(configured: string | null, candidates: readonly string[] = ESP_CANDIDATES): Promise<string> {
  if (configured !== null) {
    if (!(await isDirectory(configured)))
      throw new CairnError(
        `the ESP mount point ${configured} is not a directory`,
        'mount the EFI System Partition there or fix esp in the agent configuration',
      );
    return configured;
  }
  for (const candidate of candidates) {
    if (await isDirectory(join(candidate, 'EFI'))) return candidate;
  }
  throw new CairnError(`no EFI System Partition mounted at ${candidates.join(' or ')}`, 'mount it at /efi, or set esp in the agent configuration');
}

function preferBlessed(entries: BootEntry[]): BootEntry | undefined {
  return entries.find((e) => e.triesLeft === null) ?? entries[0];
}

function safeUsrHash(cmdline: string): string | undefined {
  try {
    return usrHashFromCmdline(cmdline);
  } catch {
    return undefined;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

function notFoundAs<T>(value: T): (err: unknown) => T {
  return (err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return value;
    throw err;
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
