// The initramfs carries the kernel modules its init needs, taken from the image's own kernel package.
// cairn does not run maintainer scripts, so there is no depmod output (modules.dep) in the tree:
// dependencies come from each module's `.modinfo` section (`depends=`, written by the kernel build's
// modpost from the same symbol resolution depmod would do), and built-in drivers from modules.builtin.
import { readFile, readdir } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { compressionOf, decompressBuffer } from '../debian/decompress.js';
import { CairnError } from '../errors.js';

/** What cairn's init needs: disks (virtio, SCSI, SATA, NVMe), dm-verity and the /usr and root filesystems. */
export const INIT_MODULES: readonly string[] = ['virtio_blk', 'virtio_scsi', 'sd_mod', 'ahci', 'nvme', 'dm_mod', 'dm_verity', 'erofs', 'ext4'];

export interface KernelModule {
  /** The module's name as the kernel knows it (`dm_verity`). */
  name: string;
  /** Where it lies in the root tree, relative to the tree (`usr/lib/modules/<ver>/kernel/drivers/md/dm-verity.ko.xz`). */
  source: string;
  /** Its file name once decompressed (`dm-verity.ko`). */
  fileName: string;
  /** The decompressed module, ready for finit_module. */
  data: Buffer;
}

/** Module names treat `-` and `_` alike (`dm-verity.ko` is the module `dm_verity`). */
export const moduleName = (nameOrFile: string): string => nameOrFile.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

const MODULE_FILE = /\.ko(\.(xz|zst|gz))?$/;

async function moduleFiles(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = join(d, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.isFile() && MODULE_FILE.test(e.name)) {
        const name = moduleName(e.name);
        const other = found.get(name);
        if (other !== undefined)
          throw new CairnError(`kernel module ${name} is there twice: ${other} and ${path}`, 'the kernel package is inconsistent; use another kernel package');
        found.set(name, path);
      }
    }
  };
  await walk(dir);
  return found;
}

async function builtinModules(dir: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(join(dir, 'modules.builtin'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
    throw err;
  }
  return new Set(
    text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => moduleName(basename(l.trim()))),
  );
}

/**
 * The NUL-separated `key=value` strings of an ELF64 little-endian object's `.modinfo` section.
 * Every offset is checked against the file, so a corrupt module is an error, never a wild read.
 */
export function readModinfo(elf: Buffer, where: string): Map<string, string[]> {
  const bad = (why: string) => new CairnError(`${where} is not a usable kernel module: ${why}`, 'the kernel package is damaged or not for this architecture');
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw bad('no ELF header');
  if (elf[4] !== 2 || elf[5] !== 1) throw bad('not a 64-bit little-endian ELF file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shentsize < 64 || shstrndx >= shnum || shoff + shnum * shentsize > elf.length) throw bad('section headers lie outside the file');
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    const offset = Number(elf.readBigUInt64LE(h + 0x18));
    const size = Number(elf.readBigUInt64LE(h + 0x20));
    if (offset + size > elf.length) throw bad(`section ${i} lies outside the file`);
    return { nameOffset: elf.readUInt32LE(h), data: elf.subarray(offset, offset + size) };
  };
  const names = section(shstrndx).data;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = names.indexOf(0, s.nameOffset);
    if (s.nameOffset >= names.length || end < 0 || names.toString('latin1', s.nameOffset, end) !== '.modinfo') continue;
    const info = new Map<string, string[]>();
    for (const field of s.data.toString('utf8').split('\0')) {
      const eq = field.indexOf('=');
      if (eq <= 0) continue;
      const key = field.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), field.slice(eq + 1)]);
    }
    return info;
  }
  throw bad('no .modinfo section');
}

/** `softdep=pre: a b post: c` → the modules wanted before this one (`a`, `b`). */
function preSoftdeps(values: readonly string[]): string[] {
  const pre: string[] = [];
  for (const v of values) {
    let inPre = false;
    for (const word of v.trim().split(/\s+/)) {
      if (word === 'pre:') inPre = true;
      else if (word === 'post:') inPre = false;
      else if (inPre && word !== '') pre.push(word);
    }
  }
  return pre;
}

/**
 * The modules to load for `wanted` from the kernel `kernelVersion` in the root tree `rootfs`
 * (usr/lib/modules/<ver>/), dependencies first, each decompressed. Built-in modules are left out;
 * a module neither built in nor shipped is an error naming what needed it. Pre-softdeps are loaded
 * too when the kernel has them, as modprobe would.
 */
export async function moduleClosure(rootfs: string, kernelVersion: string, wanted: readonly string[]): Promise<KernelModule[]> {
  const dir = join(rootfs, 'usr/lib/modules', kernelVersion);
  let files: Map<string, string>;
  try {
    files = await moduleFiles(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CairnError(
        `the root tree has no modules for kernel ${kernelVersion} (${dir} is missing)`,
        "check that the recipe's kernel package is installed and matches the kernel version",
      );
    }
    throw err;
  }
  const builtin = await builtinModules(dir);
  const result: KernelModule[] = [];
  const done = new Set<string>();
  const visiting: string[] = [];

  const visit = async (name: string, optional: boolean): Promise<void> => {
    if (builtin.has(name) || done.has(name)) return;
    if (visiting.includes(name))
      throw new CairnError(
        `kernel ${kernelVersion}: modules depend on each other in a circle: ${[...visiting.slice(visiting.indexOf(name)), name].join(' → ')}`,
      );
    const path = files.get(name);
    if (path === undefined) {
      if (optional) return;
      const neededBy = visiting.length > 0 ? ` (needed by ${[...visiting].reverse().join(' ← ')})` : '';
      throw new CairnError(
        `kernel ${kernelVersion} has no module ${name}${neededBy}: it is neither built in (modules.builtin) nor under ${relative(rootfs, dir)}/`,
        `cairn's init needs it; use a kernel package built with ${name} as a module or built in`,
      );
    }
    visiting.push(name);
    const source = relative(rootfs, path);
    const data = await decompressBuffer(await readFile(path), compressionOf(path));
    const info = readModinfo(data, source);
    const declared = info.get('name')?.[0];
    if (declared !== undefined && declared !== name)
      throw new CairnError(`${source} calls itself ${declared}, but its file name says ${name}`, 'the kernel package is damaged');
    for (const dep of preSoftdeps(info.get('softdep') ?? [])) await visit(moduleName(dep), true);
    for (const dep of (info.get('depends') ?? []).join(',').split(',')) {
      if (dep !== '') await visit(moduleName(dep), false);
    }
    visiting.pop();
    done.add(name);
    result.push({ name, source, fileName: basename(path).replace(/\.(xz|zst|gz)$/, ''), data });
  };

  for (const w of wanted) await visit(moduleName(w), false);
  return result;
}
