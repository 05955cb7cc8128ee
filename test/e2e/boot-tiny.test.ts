// UEFI boots of the tiny image in QEMU with OVMF, read from the serial console: systemd-boot
// picks the UKI and counts the boot down, cairn's init sets up dm-verity with the manifest's
// root hash, /usr is read-only; a disk with one flipped byte in usr-A stops with cairn's
// verity error and never reaches a shell.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readGpt } from '../../src/image/gpt.js';
import { SerialConsole } from './serial-console.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/tiny.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root';

let work: string;
let build: string;
let rootHash: string;

before(async () => {
  if (skip) return;
  work = await mkdtemp(join(tmpdir(), 'cairn-e2e-tiny-'));
  await copyFile(recipe, join(work, 'tiny.yaml'));
  await run(process.execPath, [cli, 'build', join(work, 'tiny.yaml'), '--out', join(work, 'images'), '--json'], { maxBuffer: 1 << 24 });
  build = join(work, 'images/tiny/0.1.0');
  rootHash = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8')).usr.rootHash;
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function partition(disk: string, label: string) {
  const found = (await readGpt(disk)).partitions.find((p) => p.label === label);
  assert.ok(found, `${label} partition`);
  return found;
}

async function ukiNames(disk: string): Promise<string[]> {
  const esp = await partition(disk, 'esp');
  const { stdout } = await run('mdir', ['-b', '-i', `${disk}@@${esp.offset}`, '::EFI/Linux'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return stdout
    .split('\n')
    .map((l) => l.trim().split('/').pop()!)
    .filter((n) => n.endsWith('.efi'));
}

test('tiny boots through systemd-boot and cairn-init onto a verified, read-only /usr', { skip, timeout: 300_000 }, async () => {
  const disk = join(work, 'boot.raw');
  await copyFile(join(build, 'disk.raw'), disk);
  assert.deepEqual(await ukiNames(disk), ['tiny_0.1.0+3.efi']);
  const guest = await SerialConsole.boot({ disk });
  try {
    const [, hash, device] = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on (\/dev\/[a-z0-9]+) \(hash/, 180_000);
    assert.equal(hash, rootHash, 'the verity device carries the manifest root hash');
    assert.match(device!, /^\/dev\/vda\d+$/);
    await guest.waitFor(/cairn-tiny: up/, 120_000);
    await guest.waitFor(/# /, 30_000);
    guest.type("grep ' /usr ' /proc/mounts; touch /usr/cairn-probe; echo probe-rc=$?; cat /sys/block/dm-0/dm/name");
    const [, rc] = await guest.waitFor(/probe-rc=(\d+)\n/, 60_000);
    assert.notEqual(rc, '0', 'writing to /usr fails');
    assert.match(guest.output, /^\/dev\/(mapper\/usr|dm-0) \/usr erofs ro[ ,]/m, '/usr is the dm-verity device, EROFS, read-only');
    assert.match(guest.output, /Read-only file system/);
    guest.type('poweroff -f');
    await guest.exit(60_000);
  } finally {
    await guest.kill();
  }
  // systemd-boot renamed the entry as it booted it: one try used, two left.
  assert.deepEqual(await ukiNames(disk), ['tiny_0.1.0+2-1.efi']);
});

test('one flipped byte in usr-A stops the boot with the verity error, never a shell', { skip, timeout: 300_000 }, async () => {
  const disk = join(work, 'tampered.raw');
  await copyFile(join(build, 'disk.raw'), disk);
  const usr = await partition(disk, 'usr-A');
  const file = await open(disk, 'r+');
  try {
    // Byte 1024 is inside the EROFS superblock, which the mount reads first.
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, usr.offset + 1024);
    byte[0] = byte[0]! ^ 0xff;
    await file.write(byte, 0, 1, usr.offset + 1024);
  } finally {
    await file.close();
  }
  const guest = await SerialConsole.boot({ disk, snapshot: true });
  try {
    await guest.waitFor(/cairn-init: FATAL: [^\n]*/, 180_000);
    // -no-reboot turns the init's reboot into QEMU exiting.
    await guest.exit(60_000);
  } finally {
    await guest.kill();
  }
  assert.match(guest.output, /cairn-init: FATAL: (verity|mount-usr|usr)[^\n]*/);
  assert.doesNotMatch(guest.output, /cairn-tiny: up/);
  assert.doesNotMatch(guest.output, /built-in shell/);
});
