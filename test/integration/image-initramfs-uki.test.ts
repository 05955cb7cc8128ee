// The initramfs and UKI built from a real trixie root tree (the tiny recipe, which has systemd-boot-efi for the
// stub), booted in QEMU with OVMF: the stub starts the kernel with cairn's command line and initramfs,
// and a test init loads every module of the closure in the order /etc/cairn/modules gives (a wrong
// order fails with unknown symbols), then reports what the kernel saw on the serial console.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { buildInitramfs } from '../../src/image/initramfs.js';
import { INIT_MODULES, moduleClosure } from '../../src/image/kernel-modules.js';
import { buildUki } from '../../src/image/uki.js';

const REPO = join(import.meta.dirname, '../../..');
const EPOCH = 1_735_689_600;
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

// Stands in for native/init: loads the modules as the contract says, then prints what it finds.
const TEST_INIT = String.raw`
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  char line[4096], path[512];
  FILE *list = fopen("/etc/cairn/modules", "r");
  int loaded = 0, failed = 0;
  while (list && fgets(line, sizeof line, list)) {
    line[strcspn(line, "\n")] = 0;
    snprintf(path, sizeof path, "/lib/modules/%s", line);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) { printf("TEST-INIT module-failed %s\n", line); failed++; }
    else loaded++;
    if (fd >= 0) close(fd);
  }
  printf("TEST-INIT modules loaded=%d failed=%d\n", loaded, failed);
  FILE *c = fopen("/proc/cmdline", "r");
  if (c && fgets(line, sizeof line, c)) printf("TEST-INIT cmdline %s", line);
  DIR *d = opendir("/sys/block");
  struct dirent *e;
  while (d && (e = readdir(d))) if (e->d_name[0] != '.') printf("TEST-INIT block %s\n", e->d_name);
  printf("TEST-INIT done\n");
  fflush(stdout);
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
`;

let work: string;
let rootfs: string;
let kver: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-uki-'));
  // A copy, so the lock is written here and not beside the shipped recipe; the tree is all this needs.
  const recipeFile = join(work, 'tiny.yaml');
  await writeFile(recipeFile, await readFile(join(REPO, 'recipes/tiny.yaml')));
  execFileSync(process.execPath, [join(REPO, 'dist/src/cli/main.js'), 'build', recipeFile, '--stage', 'rootfs', '--out', join(work, 'images')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  rootfs = join(work, 'images/tiny/0.1.0/rootfs');
  const versions = await readdir(join(rootfs, 'usr/lib/modules'));
  assert.equal(versions.length, 1, 'one kernel in the tree');
  kver = versions[0]!;
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('the module closure of the trixie cloud kernel puts dependencies first and skips built-ins', async () => {
  const mods = await moduleClosure(rootfs, kver, INIT_MODULES);
  const names = mods.map((m) => m.name);
  const before = (a: string, b: string) => assert.ok(names.indexOf(a) >= 0 && names.indexOf(a) < names.indexOf(b), `${a} before ${b} in ${names.join(' ')}`);
  before('dm_mod', 'dm_verity');
  before('dm_bufio', 'dm_verity');
  before('reed_solomon', 'dm_verity');
  before('libcrc32c', 'erofs');
  before('scsi_mod', 'virtio_scsi');
  assert.ok(!names.includes('ext4'), 'ext4 is built into the cloud kernel');
  assert.equal(new Set(names).size, names.length);
  for (const m of mods) {
    assert.equal(m.data.readUInt32BE(0), 0x7f454c46, `${m.fileName} is a decompressed ELF object`);
    assert.match(m.fileName, /^[a-z0-9_-]+\.ko$/);
  }
  await assert.rejects(
    moduleClosure(rootfs, kver, ['dm_verity', 'no_such_driver']),
    (err: unknown) => err instanceof CairnError && /has no module no_such_driver/.test(err.message),
  );
});

test('initramfs and UKI are reproducible, and the UKI boots in QEMU with OVMF', { timeout: 300_000 }, async () => {
  const initSource = join(work, 'test-init.c');
  const initBinary = join(work, 'test-init');
  await writeFile(initSource, TEST_INIT);
  execFileSync('gcc', ['-static', '-Os', '-o', initBinary, initSource]);

  const initrd = join(work, 'initrd.xz');
  const first = await buildInitramfs({ rootfs, kernelVersion: kver, initBinary, output: initrd, sourceDateEpoch: EPOCH });
  const again = await buildInitramfs({ rootfs, kernelVersion: kver, initBinary, output: join(work, 'initrd-again.xz'), sourceDateEpoch: EPOCH });
  assert.equal(again.sha256, first.sha256, 'same inputs, same initramfs');
  // The kernel's XZ decoder accepts only CRC32 (or no) integrity checks.
  assert.match(execFileSync('xz', ['--robot', '--list', initrd]).toString(), /^totals\t.*\tCRC32\t/m);
  const listing = execFileSync('cpio', ['-t', '--quiet'], { input: execFileSync('xz', ['-dc', initrd], { maxBuffer: 256 << 20 }) })
    .toString()
    .trim()
    .split('\n');
  for (const path of ['init', 'dev/console', 'etc/cairn/modules', 'lib/modules/dm-verity.ko', 'lib/modules/erofs.ko'])
    assert.ok(listing.includes(path), `${path} in the initramfs`);

  const token = randomBytes(6).toString('hex');
  const cmdline = `console=ttyS0 panic=-1 cairn.test=${token}`;
  const stub = join(rootfs, 'usr/lib/systemd/boot/efi/linuxx64.efi.stub');
  const uki = join(work, 'uki.efi');
  const ukiInputs = {
    stub,
    kernel: join(rootfs, 'boot', `vmlinuz-${kver}`),
    initrd,
    cmdline,
    osRelease: await readFile(join(rootfs, 'usr/lib/os-release'), 'utf8'),
    uname: kver,
  };
  const sha = await buildUki({ ...ukiInputs, output: uki });
  assert.equal(await buildUki({ ...ukiInputs, output: join(work, 'uki-again.efi') }), sha, 'same inputs, same UKI');
  const sections = execFileSync('objdump', ['-h', uki]).toString();
  for (const name of ['.text', '.sdmagic', '.osrel', '.cmdline', '.uname', '.initrd', '.linux'])
    assert.match(sections, new RegExp(`\\s${name.replace('.', '\\.')}\\s`), `${name} section`);
  execFileSync('objcopy', ['-O', 'binary', '--only-section=.cmdline', uki, join(work, 'cmdline.bin')]);
  assert.equal(await readFile(join(work, 'cmdline.bin'), 'utf8'), cmdline);

  // A real FAT ESP on a virtio disk, so the loaded virtio_blk has a device to find.
  const esp = join(work, 'esp.img');
  execFileSync('truncate', ['-s', '64M', esp]);
  execFileSync('mkfs.vfat', ['-F', '32', '-n', 'ESP', esp], { stdio: 'ignore' });
  execFileSync('mmd', ['-i', esp, '::EFI', '::EFI/BOOT']);
  execFileSync('mcopy', ['-i', esp, uki, '::EFI/BOOT/BOOTX64.EFI']);
  const vars = join(work, 'vars.fd');
  await copyFile(OVMF_VARS, vars);
  const serial = await runQemu(
    [
      '-accel',
      'tcg',
      '-machine',
      'q35',
      '-m',
      '1024',
      '-nographic',
      '-no-reboot',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-drive',
      `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,file=${vars}`,
      '-drive',
      `if=none,id=esp,format=raw,file=${esp}`,
      '-device',
      'virtio-blk-pci,drive=esp',
    ],
    'TEST-INIT done',
    240_000,
  );

  assert.match(serial, new RegExp(`Linux version ${kver.replace(/[.+]/g, '\\$&')} `), "the UKI's kernel started");
  assert.match(serial, new RegExp(`TEST-INIT cmdline .*cairn\\.test=${token}`), "the kernel got the UKI's command line");
  assert.match(
    serial,
    new RegExp(`TEST-INIT modules loaded=${first.modules.length} failed=0`),
    `every module loads in order:\n${serial
      .split('\n')
      .filter((l) => l.includes('TEST-INIT'))
      .join('\n')}`,
  );
  assert.match(serial, /TEST-INIT block vda/, 'virtio_blk found the ESP disk');
});

/** Runs QEMU until `marker` shows on the serial console (or it exits), and always stops it. */
async function runQemu(args: string[], marker: string, timeoutMs: number): Promise<string> {
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${marker}" within ${timeoutMs / 1000} s; console:\n${output.slice(-3000)}`)), timeoutMs);
      const collect = (d: Buffer) => {
        output += d.toString('latin1').replace(/\r/g, '');
        if (output.includes(marker)) {
          clearTimeout(timer);
          resolve(output);
        }
      };
      qemu.stdout.on('data', collect);
      qemu.stderr.on('data', collect);
      qemu.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      qemu.on('exit', (code) => {
        clearTimeout(timer);
        if (output.includes(marker)) resolve(output);
        else reject(new Error(`qemu exited (${code}) before "${marker}"; console:\n${output.slice(-3000)}`));
      });
    });
  } finally {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    }
  }
}
