// Builds an ESP, a root file system and disk.raw from small artifacts and checks them with the
// tools a user would trust instead of cairn's own reader: sgdisk, fsck.vfat, mtools, e2fsck,
// debugfs, and the kernel itself through a partitioned loop device.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, chmod, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { buildEsp, standardEspFiles } from '../../src/image/esp.js';
import { makeRootFs, writeDisk, type DiskOptions } from '../../src/image/disk.js';
import { verityPartitionUuids } from '../../src/image/verity.js';
import { MiB, readGpt } from '../../src/image/gpt.js';
import { withLoopDisk } from '../fixtures/loop-disk.js';

const EPOCH = 1_720_000_000;
const isRoot = process.getuid?.() === 0;
const asRoot = { skip: isRoot ? false : 'loop devices and file ownership need root' };
const ROOT_HASH = createHash('sha256').update('cairn disk test').digest('hex');
const SIZES = { esp: 40 * MiB, usr: 8 * MiB, usrVerity: MiB, root: 16 * MiB };
const MTOOLS = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

let work: string;
let inputs: { systemdBoot: string; uki: string; usr: string; usrVerity: string; tree: string };

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const run = (command: string, args: string[], env = process.env): string =>
  execFileSync(command, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });

/** Bytes that differ from block to block, so a copy at the wrong offset cannot pass. */
function pattern(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, n = 0; at < size; at += 32, n++) createHash('sha256').update(`${seed}${n}`).digest().copy(out, at);
  return out;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-disk-'));
  const src = join(work, 'inputs');
  await mkdir(src);
  const systemdBoot = join(src, 'systemd-bootx64.efi');
  await writeFile(systemdBoot, pattern(100_000, 'sd-boot'));
  const uki = join(src, 'uki.efi');
  await writeFile(uki, pattern(3 * MiB + 123, 'uki'));
  const payload = join(src, 'payload');
  await mkdir(join(payload, 'bin'), { recursive: true });
  await writeFile(join(payload, 'bin', 'hello'), 'hello from usr\n');
  const usr = join(src, 'usr.erofs');
  run('mkfs.erofs', ['-T', String(EPOCH), '-U', '00000000-0000-0000-0000-000000000001', '--all-root', usr, payload]);
  const usrVerity = join(src, 'usr.verity');
  // A zero block in the middle must come out as zeros even though the copy leaves it a hole.
  await writeFile(usrVerity, Buffer.concat([pattern(4096, 'verity-a'), Buffer.alloc(2 * MiB - 8192), pattern(4096, 'verity-b')]).subarray(0, 512 * 1024));
  const tree = join(src, 'tree');
  await mkdir(join(tree, 'usr', 'bin'), { recursive: true });
  await writeFile(join(tree, 'usr', 'bin', 'sh'), 'not in root');
  await mkdir(join(tree, 'etc'));
  await writeFile(join(tree, 'etc', 'hostname'), 'factory only');
  await mkdir(join(tree, 'tmp'));
  await chmod(join(tree, 'tmp'), 0o1777);
  await mkdir(join(tree, 'var', 'cache', 'debconf'), { recursive: true });
  await writeFile(join(tree, 'var', 'cache', 'debconf', 'note'), 'kept');
  await symlink('usr/bin', join(tree, 'bin'));
  await symlink('usr/lib', join(tree, 'lib'));
  inputs = { systemdBoot, uki, usr, usrVerity, tree };
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const fresh = (name: string): Promise<string> => mkdtemp(join(work, `${name}-`));

async function buildAll(dir: string): Promise<{ esp: string; root: string; disk: string; options: DiskOptions }> {
  const esp = join(dir, 'esp.img');
  await buildEsp({
    output: esp,
    size: SIZES.esp,
    sourceDateEpoch: EPOCH,
    files: standardEspFiles({ name: 'tiny', version: '0.1.0', arch: 'amd64', systemdBoot: inputs.systemdBoot, uki: inputs.uki }),
  });
  const root = join(dir, 'root.ext4');
  await makeRootFs({ output: root, size: SIZES.root, sourceDateEpoch: EPOCH, name: 'tiny', tree: inputs.tree });
  const disk = join(dir, 'disk.raw');
  const options: DiskOptions = {
    output: disk,
    name: 'tiny',
    arch: 'amd64',
    sizes: SIZES,
    esp,
    usr: inputs.usr,
    usrVerity: inputs.usrVerity,
    root,
    rootHash: ROOT_HASH,
  };
  await writeDisk(options);
  return { esp, root, disk, options };
}

let first: Awaited<ReturnType<typeof buildAll>>;

test('the ESP is a clean FAT file system holding systemd-boot, loader.conf and the counted UKI', asRoot, async () => {
  first = await buildAll(await fresh('a'));
  run('fsck.vfat', ['-n', first.esp]);
  const listing = run('mdir', ['-/', '-b', '-i', first.esp, '::/'], MTOOLS).split('\n').filter(Boolean).sort();
  assert.deepEqual(listing, [
    '::/EFI/',
    '::/EFI/BOOT/',
    '::/EFI/BOOT/BOOTX64.EFI',
    '::/EFI/Linux/',
    '::/EFI/Linux/tiny_0.1.0+3.efi',
    '::/EFI/systemd/',
    '::/EFI/systemd/systemd-bootx64.efi',
    '::/loader/',
    '::/loader/loader.conf',
  ]);
  const conf = run('mtype', ['-i', first.esp, '::/loader/loader.conf'], MTOOLS);
  assert.match(conf, /^timeout 0$/m);
  assert.match(conf, /^editor no$/m);
  for (const [inside, source] of [
    ['EFI/Linux/tiny_0.1.0+3.efi', inputs.uki],
    ['EFI/BOOT/BOOTX64.EFI', inputs.systemdBoot],
  ] as const) {
    const out = join(work, 'copied-out');
    run('mcopy', ['-n', '-i', first.esp, `::/${inside}`, out], MTOOLS);
    assert.equal(sha256(out), sha256(source), inside);
    await rm(out);
  }
  // Times are the build's, not the clock's (mdir prints local time; TZ pinned).
  assert.match(run('mdir', ['-i', first.esp, '::/EFI/Linux'], { ...MTOOLS, TZ: 'UTC' }), /2024-07-03\s+9:46/);
});

test("the root file system holds the tree's skeleton with empty /usr and /etc", asRoot, async () => {
  run('e2fsck', ['-fn', first.root]);
  const ls = (path: string): string => run('debugfs', ['-R', `ls -l ${path}`, first.root]);
  const top = ls('/');
  for (const name of ['bin', 'lib', 'usr', 'etc', 'tmp', 'var', 'lost+found']) assert.match(top, new RegExp(` ${name.replace('+', '\\+')}\\s*$`, 'm'), name);
  assert.match(top, /^\s*\d+\s+41777 .* tmp\s*$/m);
  assert.doesNotMatch(ls('/usr'), /\bbin\b/);
  assert.doesNotMatch(ls('/etc'), /hostname/);
  assert.equal(run('debugfs', ['-R', 'cat /var/cache/debconf/note', first.root]), 'kept');
  assert.match(run('debugfs', ['-R', 'stat /bin', first.root]), /Fast link dest: "usr\/bin"/);
  const stat = run('debugfs', ['-R', 'stat /var/cache', first.root]);
  for (const field of ['ctime', 'atime', 'mtime', 'crtime']) assert.match(stat, new RegExp(`${field}: 0x${EPOCH.toString(16)}:00000000`), field);
});

test("sgdisk finds nothing wrong and shows each partition's type, GUID, name and attributes", asRoot, () => {
  assert.match(run('sgdisk', ['-v', first.disk]), /No problems found/);
  const slot = verityPartitionUuids(ROOT_HASH);
  const expected: [string, string, string, string][] = [
    ['C12A7328-F81F-11D2-BA4B-00A0C93EC93B', '', 'esp', '0000000000000000'],
    ['8484680C-9521-48C6-9C11-B0720656F69E', slot.usr, 'usr-A', '1000000000000000'],
    ['77FF5F63-E7B6-4633-ACF4-1565B864C0E6', slot.usrVerity, 'usr-A-verity', '1000000000000000'],
    ['8484680C-9521-48C6-9C11-B0720656F69E', '', 'usr-B', '1000000000000000'],
    ['77FF5F63-E7B6-4633-ACF4-1565B864C0E6', '', 'usr-B-verity', '1000000000000000'],
    ['4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709', '', 'root', '0000000000000000'],
  ];
  const uuids = new Set<string>();
  expected.forEach(([type, uuid, name, attributes], index) => {
    const info = run('sgdisk', ['-i', String(index + 1), first.disk]);
    assert.match(info, new RegExp(`Partition GUID code: ${type} `), name);
    const unique = /Partition unique GUID: ([0-9A-F-]+)/.exec(info)![1]!;
    if (uuid !== '') assert.equal(unique, uuid.toUpperCase(), name);
    uuids.add(unique);
    assert.match(info, new RegExp(`Partition name: '${name}'`));
    assert.match(info, new RegExp(`Attribute flags: ${attributes}`), name);
    const start = Number(/First sector: (\d+)/.exec(info)![1]);
    assert.equal(start % 2048, 0, `${name} is 1 MiB aligned`);
  });
  assert.equal(uuids.size, 6, 'partition GUIDs are unique');
  // The usr UUID spells the root hash: what the initramfs searches for.
  assert.equal(slot.usr.replace(/-/g, '') + slot.usrVerity.replace(/-/g, ''), ROOT_HASH);
});

test('readGpt reads back what sgdisk sees', asRoot, async () => {
  const layout = await readGpt(first.disk);
  const sizes = [SIZES.esp, SIZES.usr, SIZES.usrVerity, SIZES.usr, SIZES.usrVerity, SIZES.root];
  assert.deepEqual(
    layout.partitions.map((p) => p.size),
    sizes,
  );
  const table = run('sgdisk', ['-p', first.disk]);
  for (const p of layout.partitions) assert.match(table, new RegExp(`^\\s+${p.number}\\s+${p.firstLba}\\s+${p.lastLba}\\s.*${p.label}$`, 'm'));
  assert.match(table, new RegExp(`Disk identifier \\(GUID\\): ${layout.diskGuid.toUpperCase()}`));
});

test('the same inputs in another directory at another time give a byte-identical ESP, root and disk', asRoot, async () => {
  // Move the clock-visible inputs: a leak of source mtimes or the current time would show.
  await utimes(inputs.uki, new Date(), new Date());
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const second = await buildAll(await fresh('b'));
  for (const key of ['esp', 'root', 'disk'] as const) assert.equal(sha256(second[key]), sha256(first[key]), key);
  // Sparse: the empty B slot and the root's free space are holes, not written zeros.
  const st = statSync(second.disk);
  assert.ok(st.blocks * 512 < st.size / 2, `disk.raw uses ${st.blocks * 512} of ${st.size} bytes`);
});

test('a partitioned loop device exposes the artifacts, and the kernel mounts them', asRoot, async () => {
  await withLoopDisk(first.disk, 6, async (loop) => {
    const part = async (n: number, length: number): Promise<Buffer> => (await readFile(loop.partition(n))).subarray(0, length);
    for (const [n, path] of [
      [1, first.esp],
      [2, inputs.usr],
      [3, inputs.usrVerity],
      [6, first.root],
    ] as const) {
      const expected = readFileSync(path);
      assert.ok((await part(n, expected.length)).equals(expected), `partition ${n} holds ${path}`);
    }
    assert.ok(
      (await readFile(loop.partition(4))).every((b) => b === 0),
      'slot B is empty',
    );
    let mnt = loop.mount(2, 'erofs');
    assert.equal(readFileSync(join(mnt, 'bin', 'hello'), 'utf8'), 'hello from usr\n');
    mnt = loop.mount(6, 'ext4');
    assert.deepEqual(readdirSync(mnt).sort(), ['bin', 'etc', 'lib', 'lost+found', 'tmp', 'usr', 'var']);
    assert.equal(statSync(join(mnt, 'tmp')).mode & 0o7777, 0o1777);
  });
});

test('an artifact larger than its partition is refused before any output exists', asRoot, async () => {
  const dir = await fresh('small');
  const options: DiskOptions = { ...first.options, output: join(dir, 'disk.raw'), sizes: { ...SIZES, usrVerity: 256 * 1024 } };
  await assert.rejects(
    writeDisk(options),
    (err: Error) => err instanceof CairnError && err.message === 'usr.verity is 0.5 MiB but disk.usr-verity is 0.25 MiB: raise disk.usr-verity in the recipe',
  );
  const big = join(dir, 'usr.erofs');
  await writeFile(big, Buffer.alloc(SIZES.usr + 1));
  await assert.rejects(
    writeDisk({ ...first.options, output: join(dir, 'disk.raw'), usr: big }),
    (err: Error) => err instanceof CairnError && err.message === 'usr.erofs is 8.01 MiB but disk.usr is 8 MiB: raise disk.usr in the recipe',
  );
  assert.deepEqual(readdirSync(dir), ['usr.erofs'], 'no disk.raw and no temporary file');
});

test('ESP files that do not fit, and bad ESP paths, are refused without leaving an image', asRoot, async () => {
  const dir = await fresh('esp-full');
  const huge = join(dir, 'huge.efi');
  await writeFile(huge, pattern(3 * MiB, 'huge'));
  await assert.rejects(
    buildEsp({ output: join(dir, 'esp.img'), size: 2 * MiB, sourceDateEpoch: EPOCH, files: [{ path: 'EFI/Linux/huge.efi', source: huge }] }),
    /the ESP files do not fit in disk.esp \(2 MiB\)/,
  );
  await assert.rejects(
    buildEsp({ output: join(dir, 'esp.img'), size: 2 * MiB, sourceDateEpoch: EPOCH, files: [{ path: '../escape', content: 'x' }] }),
    /not a relative path of plain names/,
  );
  await assert.rejects(
    buildEsp({
      output: join(dir, 'esp.img'),
      size: 2 * MiB,
      sourceDateEpoch: EPOCH,
      files: [
        { path: 'EFI/a', content: 'x' },
        { path: 'efi/A', content: 'y' },
      ],
    }),
    /listed twice/,
  );
  assert.deepEqual(readdirSync(dir), ['huge.efi']);
});
