// The EFI System Partition image: FAT made by mkfs.fat and filled by mtools without mounting,
// with every timestamp, the volume id and the directory order fixed so the image is reproducible.
import { runTool } from '../host-tool.js';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CairnError } from '../errors.js';
import { partitionTypes } from './partition-types.js';

export type EspFile = { path: string; source: string } | { path: string; content: string };

export interface EspOptions {
  output: string;
  size: number;
  files: EspFile[];
  sourceDateEpoch: number;
}

// Characters FAT long names allow, minus the ones that would mean something to mtools or a shell.
const PATH_PART = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
/** Below this, FAT32 cannot have its minimum 65525 clusters; mkfs.fat then picks FAT12/16. */
const FAT32_MIN = 40 * 1024 * 1024;

function checkPaths(files: EspFile[]): void {
  const seen = new Set<string>();
  for (const file of files) {
    const parts = file.path.split('/');
    if (parts.some((p) => !PATH_PART.test(p) || p.endsWith('.'))) {
      throw new CairnError(
        `ESP path ${JSON.stringify(file.path)} is not a relative path of plain names`,
        'use names of letters, digits, ".", "_", "+" and "-" separated by "/"',
      );
    }
    // FAT compares names without case, so EFI/Boot and EFI/BOOT are one directory.
    const key = file.path.toUpperCase();
    if (seen.has(key)) throw new CairnError(`ESP path ${file.path} is listed twice`);
    seen.add(key);
  }
  for (const key of seen) {
    const parts = key.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (seen.has(parts.slice(0, i).join('/'))) throw new CairnError(`ESP path ${parts.slice(0, i).join('/')} is a file and a directory`);
    }
  }
}

/** Directories parents-first, then files, each group in byte order: mtools writes entries in the order it is given. */
function creationOrder(files: EspFile[]): { dirs: string[]; files: EspFile[] } {
  const dirs = new Set<string>();
  for (const file of files) {
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const byPath = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return { dirs: [...dirs].sort(byPath), files: [...files].sort((a, b) => byPath(a.path, b.path)) };
}

/** A volume id that differs between releases (their UKI names differ) but not between rebuilds. */
function volumeId(files: EspFile[], size: number, sourceDateEpoch: number): string {
  const hash = createHash('sha256').update(`cairn-esp\0${size}\0${sourceDateEpoch}`);
  for (const f of creationOrder(files).files) hash.update(`\0${f.path}`);
  return hash.digest('hex').slice(0, 8);
}

/** Builds a FAT image of exactly `size` bytes holding `files`, replacing `output` only when complete. */
export async function buildEsp(options: EspOptions): Promise<void> {
  const { output, size, files, sourceDateEpoch } = options;
  if (!Number.isSafeInteger(size) || size % (1024 * 1024) !== 0 || size < 2 * 1024 * 1024) {
    throw new CairnError(`ESP size ${size} is not a whole number of MiB of at least 2 MiB`, 'set disk.esp in the recipe, e.g. 64MiB');
  }
  checkPaths(files);
  const order = creationOrder(files);
  const dir = dirname(output);
  const staging = await mkdtemp(join(dir, '.esp-staging-'));
  const image = join(dir, `.${basename(output)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    // mcopy -m takes each file's time from the file it copies; staged copies carry the build's time.
    const empty = join(staging, 'empty-dir');
    await mkdir(empty);
    const staged: string[] = [];
    for (const [index, file] of order.files.entries()) {
      const path = join(staging, `file-${index}`);
      if ('source' in file) await copyFileChecked(file.source, path);
      else await writeFile(path, file.content);
      staged.push(path);
    }
    for (const path of [empty, ...staged]) await utimes(path, sourceDateEpoch, sourceDateEpoch);

    const handle = await open(image, 'wx', 0o644);
    try {
      await handle.truncate(size);
    } finally {
      await handle.close();
    }
    const fat = size >= FAT32_MIN ? ['-F', '32'] : [];
    await runTool('mkfs.vfat', ['--invariant', '-i', volumeId(files, size, sourceDateEpoch), '-n', 'ESP', ...fat, image], {
      SOURCE_DATE_EPOCH: String(sourceDateEpoch),
    });
    const mtools = { MTOOLS_SKIP_CHECK: '1', TZ: 'UTC', MTOOLSRC: '/dev/null' };
    for (const d of order.dirs) await runTool('mcopy', ['-s', '-m', '-i', image, empty, `::/${d}`], mtools);
    for (const [index, file] of order.files.entries()) {
      await runTool('mcopy', ['-m', '-i', image, staged[index]!, `::/${file.path}`], mtools).catch((err: unknown) => {
        if (err instanceof CairnError && /Disk full|No free/i.test(err.message)) {
          throw new CairnError(`the ESP files do not fit in disk.esp (${size / 1024 / 1024} MiB)`, 'raise disk.esp in the recipe');
        }
        throw err;
      });
    }
    await rename(image, output);
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(image, { force: true });
  }
}

async function copyFileChecked(source: string, destination: string): Promise<void> {
  try {
    await copyFile(source, destination);
  } catch (err) {
    throw new CairnError(`cannot read ${source} for the ESP: ${(err as Error).message}`);
  }
}

/**
 * The boot entry file name of the Boot Loader Specification with Automatic Boot Assessment:
 * systemd-boot renames `+3` to `+2-1` when it tries the entry, and the agent drops the counter
 * once a boot is blessed.
 */
export function ukiFileName(name: string, version: string, tries: number): string {
  for (const [what, value] of [
    ['name', name],
    ['version', version],
  ] as const) {
    if (!/^[A-Za-z0-9][A-Za-z0-9.~^-]*$/.test(value)) {
      throw new CairnError(
        `the ${what} ${JSON.stringify(value)} cannot be part of a boot entry name`,
        'use letters, digits, ".", "~", "^" and "-" ("+" starts the boot counter, "_" separates name and version)',
      );
    }
  }
  return `${name}_${version}+${tries}.efi`;
}

// systemd-boot finds UKIs in EFI/Linux/ itself (Boot Loader Specification type #2) and boots the
// newest one with tries left, so loader.conf only hides the menu and keeps out other entries.
const LOADER_CONF = `timeout 0
editor no
auto-entries no
console-mode keep
`;

export interface StandardEspOptions {
  name: string;
  version: string;
  arch: string;
  /** systemd-boot<suffix>.efi from the image's systemd-boot-efi package (not the build host's). */
  systemdBoot: string;
  uki: string;
  /** Boot tries before systemd-boot falls back to the previous entry. */
  tries?: number;
}

/** The ESP of a cairn disk: systemd-boot as the removable-media loader too, loader.conf and the UKI. */
export function standardEspFiles(options: StandardEspOptions): EspFile[] {
  const suffix = partitionTypes(options.arch).efiSuffix;
  return [
    { path: `EFI/BOOT/BOOT${suffix.toUpperCase()}.EFI`, source: options.systemdBoot },
    { path: `EFI/systemd/systemd-boot${suffix}.efi`, source: options.systemdBoot },
    { path: 'loader/loader.conf', content: LOADER_CONF },
    { path: `EFI/Linux/${ukiFileName(options.name, options.version, options.tries ?? 3)}`, source: options.uki },
  ];
}
