// The image stages: from the assembled tree to the verified /usr, the initramfs and UKI, and
// the A/B disk. Every artifact is written under a temporary name and renamed when complete.
import { readdir, readFile, rm, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { writeDisk, makeRootFs } from '../image/disk.js';
import { buildEsp, standardEspFiles, ukiFileName } from '../image/esp.js';
import { buildUsrImage } from '../image/erofs.js';
import { buildInitramfs } from '../image/initramfs.js';
import { partitionTypes } from '../image/partition-types.js';
import { buildUki } from '../image/uki.js';
import { computeVerity, usrHashArgument, type VerityResult } from '../image/verity.js';
import { NATIVE } from '../install.js';
import type { Recipe } from '../recipe/types.js';
import type { BuildContext } from './context.js';

export interface UsrArtifacts {
  usr: string;
  usrVerity: string;
  verity: VerityResult;
}

export async function buildUsr({ recipe, outDir, sourceDateEpoch }: BuildContext, rootfs: string): Promise<UsrArtifacts> {
  const usr = join(outDir, 'usr.erofs');
  const usrVerity = join(outDir, 'usr.verity');
  await buildUsrImage({ rootfs, output: usr, sourceDateEpoch, compression: recipe.disk.usrCompression });
  const verity = await computeVerity(usr, usrVerity);
  return { usr, usrVerity, verity };
}

/** The one kernel the tree ships in /boot (Debian's linux-image packages install it there). */
export async function kernelVersionOf(rootfs: string): Promise<string> {
  const kernels = (await readdir(join(rootfs, 'boot')).catch(() => [] as string[])).filter((n) => n.startsWith('vmlinuz-')).sort();
  if (kernels.length !== 1) {
    throw new CairnError(
      kernels.length === 0
        ? `${rootfs}/boot has no vmlinuz-*: the recipe's kernel package installed no kernel`
        : `${rootfs}/boot has ${kernels.length} kernels (${kernels.join(', ')}): cairn boots exactly one`,
      'name one linux-image package under kernel.package and no other in packages',
    );
  }
  return kernels[0]!.slice('vmlinuz-'.length);
}

/** The kernel command line baked into the UKI: it names the verified /usr by its root hash, never a slot. */
export function kernelCmdline(recipe: Recipe, rootHash: string): string {
  return ['console=tty0', 'console=ttyS0,115200', usrHashArgument(rootHash), `init=${recipe.init}`, 'rw'].join(' ');
}

function efiStub(rootfs: string, arch: string): { stub: string; systemdBoot: string } {
  const suffix = partitionTypes(arch).efiSuffix;
  const dir = join(rootfs, 'usr/lib/systemd/boot/efi');
  return { stub: join(dir, `linux${suffix}.efi.stub`), systemdBoot: join(dir, `systemd-boot${suffix}.efi`) };
}

export interface BootArtifacts {
  uki: string;
  ukiName: string;
  cmdline: string;
  kernelVersion: string;
  modules: string[];
}

export async function buildBoot({ recipe, outDir, sourceDateEpoch }: BuildContext, rootfs: string, rootHash: string): Promise<BootArtifacts> {
  const kernelVersion = await kernelVersionOf(rootfs);
  const { stub } = efiStub(rootfs, recipe.base.architecture);
  await readFile(stub).catch(() => {
    throw new CairnError(`${stub} is missing: the image has no systemd-stub`, "add systemd-boot-efi to the recipe's packages");
  });
  const work = await mkdtemp(join(outDir, '.boot-'));
  try {
    const initrd = join(work, 'initrd.cpio.xz');
    const initramfs = await buildInitramfs({ rootfs, kernelVersion, initBinary: NATIVE.init(), output: initrd, sourceDateEpoch });
    const cmdline = kernelCmdline(recipe, rootHash);
    const uki = join(outDir, `${recipe.name}_${recipe.version}.efi`);
    await buildUki({
      stub,
      kernel: join(rootfs, 'boot', `vmlinuz-${kernelVersion}`),
      initrd,
      cmdline,
      osRelease: await readFile(join(rootfs, 'usr/lib/os-release'), 'utf8'),
      uname: kernelVersion,
      output: uki,
    });
    return { uki, ukiName: ukiFileName(recipe.name, recipe.version, 3), cmdline, kernelVersion, modules: initramfs.modules };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function buildDiskImage(
  { recipe, outDir, sourceDateEpoch }: BuildContext,
  rootfs: string,
  usr: UsrArtifacts,
  boot: BootArtifacts,
): Promise<string> {
  const { systemdBoot } = efiStub(rootfs, recipe.base.architecture);
  const work = await mkdtemp(join(outDir, '.disk-'));
  try {
    const esp = join(work, 'esp.img');
    await buildEsp({
      output: esp,
      size: recipe.disk.esp,
      files: standardEspFiles({ name: recipe.name, version: recipe.version, arch: recipe.base.architecture, systemdBoot, uki: boot.uki }),
      sourceDateEpoch,
    });
    const root = join(work, 'root.img');
    await makeRootFs({ output: root, size: recipe.disk.root, sourceDateEpoch, name: recipe.name, tree: rootfs });
    const disk = join(outDir, 'disk.raw');
    await writeDisk({
      output: disk,
      name: recipe.name,
      arch: recipe.base.architecture,
      sizes: recipe.disk,
      esp,
      usr: usr.usr,
      usrVerity: usr.usrVerity,
      root,
      rootHash: usr.verity.rootHash,
    });
    return disk;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
