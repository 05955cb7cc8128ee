// The initramfs: cairn's init as /init plus the kernel modules it loads, laid out as docs/initramfs.md
// describes (/lib/modules/<file>.ko decompressed, /etc/cairn/modules naming them in load order).
import { runToolBytes } from '../host-tool.js';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { type CpioEntry, cpioArchive } from './cpio.js';
import { INIT_MODULES, type KernelModule, moduleClosure } from './kernel-modules.js';

export interface InitramfsOptions {
  /** The image's root tree; the modules come from its kernel package. */
  rootfs: string;
  kernelVersion: string;
  /** The static init program (native/build/init). */
  initBinary: string;
  /** Module names the init needs; their dependencies are added. Default: INIT_MODULES. */
  modules?: readonly string[];
  output: string;
  sourceDateEpoch: number;
}

export interface InitramfsResult {
  /** Module names in load order. */
  modules: string[];
  size: number;
  sha256: string;
}

/** The archive's entries: everything /init expects besides what the kernel provides. */
function initramfsEntries(init: Uint8Array, modules: readonly KernelModule[]): CpioEntry[] {
  return [
    { type: 'file', path: 'init', data: init, mode: 0o755 },
    // The kernel opens /dev/console for init's stdin/stdout before running it; the mount points
    // exist so init can mount /proc, /sys, /dev and /run without creating them first.
    { type: 'dir', path: 'dev' },
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'dir', path: 'proc' },
    { type: 'dir', path: 'sys' },
    { type: 'dir', path: 'run' },
    { type: 'dir', path: 'lib/modules' },
    ...modules.map((m): CpioEntry => ({ type: 'file', path: `lib/modules/${m.fileName}`, data: m.data, mode: 0o644 })),
    { type: 'file', path: 'etc/cairn/modules', data: Buffer.from(modules.map((m) => `${m.fileName}\n`).join('')), mode: 0o644 },
  ];
}

/**
 * Compresses with xz the way the kernel's decompressor accepts it: CRC32 integrity check (the
 * in-kernel XZ decoder knows no other), a dictionary of 8 MiB rather than preset 9's 64 MiB (the
 * kernel allocates all of it while unpacking, and an initramfs is smaller than that), and one
 * thread so the output does not depend on the host's CPUs.
 */
function xzForKernel(data: Buffer): Promise<Buffer> {
  return runToolBytes('xz', ['--format=xz', '--check=crc32', '--lzma2=preset=9,dict=8MiB', '-T1', '-c'], { input: data });
}

/** Writes the xz-compressed newc initramfs to `output`; the same inputs always give the same bytes. */
export async function buildInitramfs(options: InitramfsOptions): Promise<InitramfsResult> {
  let init: Buffer;
  try {
    init = await readFile(options.initBinary);
  } catch (err) {
    throw new CairnError(`cannot read the init program ${options.initBinary}: ${(err as Error).message}`, 'build it with `make -C native`');
  }
  const modules = await moduleClosure(options.rootfs, options.kernelVersion, options.modules ?? INIT_MODULES);
  const archive = cpioArchive(initramfsEntries(init, modules), { mtime: options.sourceDateEpoch });
  const compressed = await xzForKernel(archive);
  await writeFileAtomic(options.output, compressed);
  return {
    modules: modules.map((m) => m.name),
    size: compressed.length,
    sha256: createHash('sha256').update(compressed).digest('hex'),
  };
}
