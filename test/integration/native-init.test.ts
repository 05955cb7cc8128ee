// native/init, the initramfs PID 1: built static, its parsers checked against what sgdisk and
// veritysetup write, its device-mapper code against the real kernel, and (when the tiny image's
// root tree exists) a QEMU boot of a hand-made disk through to the image's own init.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NATIVE } from '../../src/install.js';
import { hasTool, isRoot, kernelHas, needs } from '../fixtures/requirements.js';

const REPO = join(import.meta.dirname, '../../..');
const INIT = NATIVE.init();
const TINY = join(REPO, 'images/tiny/0.1.0/rootfs');
const USR_TYPE = '8484680c-9521-48c6-9c11-b0720656f69e';
const VERITY_TYPE = '77ff5f63-e7b6-4633-acf4-1565b864c0e6';
const ROOT_TYPE = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';

const needsTools = (...tools: string[]) => needs({ tools });
const needsRoot = (...tools: string[]) => needs({ root: true, tools });

let work: string;
before(async () => {
  execFileSync('make', ['-s', '-C', join(REPO, 'native')], { stdio: 'inherit' });
  work = await mkdtemp(join(tmpdir(), 'cairn-init-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function selftest(...args: string[]): { code: number; out: string } {
  const r = spawnSync(INIT, args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}
function fields(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
const uuidOf = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

test('the init is a static executable', () => {
  const desc = sh('file', ['-b', INIT]);
  assert.match(desc, /ELF 64-bit/);
  assert.match(desc, /statically linked/);
  assert.doesNotMatch(sh('readelf', ['-l', INIT]), /INTERP/);
});

test('command line: defaults, every parameter, the DPS partition UUIDs', () => {
  const hash = sha('usr image');
  const d = selftest('--selftest-cmdline', `console=ttyS0 usrhash=${hash.toUpperCase()} quiet`);
  assert.equal(d.code, 0, d.out);
  assert.deepEqual(fields(d.out), {
    usrhash: hash,
    usr_partuuid: uuidOf(hash),
    verity_partuuid: uuidOf(hash.slice(32)),
    root: 'auto',
    init: '/usr/lib/systemd/systemd',
    rootfstype: 'ext4',
    rootflags: '',
    on_failure: 'reboot',
    verify: 'lazy',
    device_timeout: '15',
    debug: '0',
  });
  const all = selftest(
    '--selftest-cmdline',
    [
      `usrhash=${hash}`,
      'cairn.root=PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4',
      'init=/usr/lib/cairn-tiny/init',
      'rootfstype=xfs',
      'rootflags="noatime,discard"',
      'cairn.on_failure=poweroff',
      'cairn.verify=full',
      'cairn.device_timeout=3',
      'cairn.debug',
      '--',
      'init=/ignored/after/dashes',
    ].join(' '),
  );
  assert.equal(all.code, 0, all.out);
  assert.deepEqual(fields(all.out), {
    usrhash: hash,
    usr_partuuid: uuidOf(hash),
    verity_partuuid: uuidOf(hash.slice(32)),
    root: '0fc63daf-8483-4772-8e79-3d69d8477de4',
    init: '/usr/lib/cairn-tiny/init',
    rootfstype: 'xfs',
    rootflags: 'noatime,discard',
    on_failure: 'poweroff',
    verify: 'full',
    device_timeout: '3',
    debug: '1',
  });
});

test('command line: bad values are refused naming the parameter', () => {
  const hash = sha('x');
  const cases: [string, RegExp][] = [
    ['console=ttyS0', /no usrhash=/],
    [`usrhash=${hash.slice(1)}`, /usrhash= must be 64 hex digits/],
    [`usrhash=${hash.slice(1)}g`, /non-hex 'g'/],
    [`usrhash=${hash} cairn.on_failure=explode`, /cairn\.on_failure=explode/],
    [`usrhash=${hash} cairn.root=/dev/vda3`, /cairn\.root=\/dev\/vda3/],
    [`usrhash=${hash} init=sbin/init`, /init=sbin\/init: expected an absolute path/],
    [`usrhash=${hash} cairn.device_timeout=0`, /cairn\.device_timeout=0/],
    [`usrhash=${hash} cairn.verify=maybe`, /cairn\.verify=maybe/],
  ];
  for (const [cmdline, message] of cases) {
    const r = selftest('--selftest-cmdline', cmdline);
    assert.equal(r.code, 1, cmdline);
    assert.match(r.out, message, cmdline);
  }
});

test('GPT: reads what sgdisk writes, falls back to the backup table, refuses garbage', needsTools('sgdisk'), async () => {
  const hash = sha('gpt test');
  const img = join(work, 'gpt.img');
  await writeFile(img, Buffer.alloc(0));
  execFileSync('truncate', ['-s', '64M', img]);
  const disk = '11111111-2222-4333-8444-555555555555';
  sh('sgdisk', [
    '-U',
    disk,
    '-n1:1M:+8M',
    `-t1:${USR_TYPE}`,
    `-u1:${uuidOf(hash)}`,
    '-n2:0:+1M',
    `-t2:${VERITY_TYPE}`,
    `-u2:${uuidOf(hash.slice(32))}`,
    '-A2:set:60',
    '-n5:0:0',
    `-t5:${ROOT_TYPE}`,
    '-u5:abcdef01-2345-4678-9abc-def012345678',
    img,
  ]);
  const expected = [
    `disk ${disk} sector 512`,
    `part 1 type ${USR_TYPE} uuid ${uuidOf(hash)} first 2048 last 18431 attrs 0000000000000000`,
    `part 2 type ${VERITY_TYPE} uuid ${uuidOf(hash.slice(32))} first 18432 last 20479 attrs 1000000000000000`,
    `part 5 type ${ROOT_TYPE} uuid abcdef01-2345-4678-9abc-def012345678 first 20480 last 131038 attrs 0000000000000000 root`,
  ].join('\n');
  const r = selftest('--selftest-gpt', img);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.trim(), expected);

  // One flipped byte in the primary entries: the CRC catches it and the backup answers.
  const buf = await readFile(img);
  buf[1024 + 40] ^= 0xff;
  await writeFile(img, buf);
  assert.equal(selftest('--selftest-gpt', img).out.trim(), expected);
  // The backup header too: nothing trustworthy is left.
  buf[buf.length - 512 + 30] ^= 0xff;
  await writeFile(img, buf);
  const bad = selftest('--selftest-gpt', img);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /error: GPT entries checksum mismatch/);

  await writeFile(img, randomBytes(64 * 1024));
  assert.match(selftest('--selftest-gpt', img).out, /error: no GPT signature/);
});

async function verityFormat(name: string, sizeBlocks: number, salt: string) {
  const data = join(work, `${name}.data`);
  const hash = join(work, `${name}.hash`);
  await writeFile(data, randomBytes(sizeBlocks * 4096));
  const out = sh('veritysetup', ['format', data, hash, `--salt=${salt}`, '--data-block-size=4096', '--hash-block-size=4096']);
  const rootHash = /Root hash:\s+([0-9a-f]{64})/.exec(out)?.[1];
  assert.ok(rootHash, out);
  return { data, hash, rootHash };
}

test('verity superblock: parsed from veritysetup format, garbage refused', needsTools('veritysetup'), async () => {
  const salt = sha('salt');
  const v = await verityFormat('sb', 300, salt);
  const r = selftest('--selftest-verity-sb', v.hash);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^version 1$/m);
  assert.match(r.out, /^data_blocks 300$/m);
  assert.match(r.out, /^salt_size 32$/m);
  assert.match(r.out, new RegExp(`^table 1 DATA HASH 4096 4096 300 1 sha256 ROOTHASH ${salt}$`, 'm'));

  const bad = join(work, 'bad.hash');
  const buf = await readFile(v.hash);
  buf.write('sha1\0', 32);
  await writeFile(bad, buf);
  assert.match(selftest('--selftest-verity-sb', bad).out, /unsupported verity hash algorithm/);
  await writeFile(bad, Buffer.alloc(4096));
  assert.match(selftest('--selftest-verity-sb', bad).out, /no verity superblock/);
});

/** Runs fn with the files attached to loop devices, always detaching them. */
async function withLoops<T>(files: string[], fn: (devs: string[]) => T): Promise<T> {
  const devs: string[] = [];
  try {
    for (const f of files) devs.push(sh('losetup', ['--find', '--show', '--read-only', f]).trim());
    return fn(devs);
  } finally {
    for (const d of devs) spawnSync('losetup', ['-d', d]);
  }
}

const hasDeviceMapper = kernelHas({ misc: 'device-mapper' });
const dmTest = hasDeviceMapper ? needsRoot('veritysetup', 'losetup', 'dmsetup') : { skip: 'the host kernel has no device-mapper (/proc/misc)' };

test('device-mapper: the init opens verity through the ioctls, and tampering reads as EIO', dmTest, async () => {
  const v = await verityFormat('dm', 256, sha('dm salt'));
  await withLoops([v.data, v.hash], ([data, hash]) => {
    const ok = selftest('--selftest-dm', v.rootHash, data!, hash!);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, new RegExp(`^ok ${256 * 4096} bytes via \\d+:\\d+$`, 'm'));
    const wrong = selftest('--selftest-dm', sha('another image'), data!, hash!);
    assert.equal(wrong.code, 1);
    assert.match(wrong.out, /^read-error 0 Input\/output error$/m);
  });
  const buf = await readFile(v.data);
  buf[100 * 4096 + 7] ^= 1;
  await writeFile(v.data, buf);
  await withLoops([v.data, v.hash], ([data, hash]) => {
    const r = selftest('--selftest-dm', v.rootHash, data!, hash!);
    assert.equal(r.code, 1);
    assert.match(r.out, /^read-error \d+ Input\/output error$/m);
    const at = Number(/read-error (\d+)/.exec(r.out)![1]);
    assert.ok(at <= 100 * 4096 && at > 90 * 4096, `read stopped at ${at}`);
  });
  assert.equal(sh('dmsetup', ['ls']).includes('cairn-selftest'), false, 'selftest left a dm device behind');
});

test('factory /etc copy keeps modes, owners and symlinks', needsRoot(), async () => {
  const src = join(work, 'factory');
  await mkdir(join(src, 'ssh/sub'), { recursive: true });
  await writeFile(join(src, 'hostname'), 'tiny\n');
  await writeFile(join(src, 'ssh/sub/key'), 'secret');
  await chmod(join(src, 'ssh/sub/key'), 0o640);
  await chown(join(src, 'ssh/sub/key'), 0, 42);
  await chmod(join(src, 'ssh'), 0o750);
  await chown(join(src, 'ssh'), 7, 8);
  await symlink('../usr/lib/os-release', join(src, 'os-release'));
  const dst = join(work, 'etc-copy');
  const r = selftest('--selftest-copy-tree', src, dst);
  assert.equal(r.code, 0, r.out);
  assert.equal(readFileSync(join(dst, 'hostname'), 'utf8'), 'tiny\n');
  const key = statSync(join(dst, 'ssh/sub/key'));
  assert.deepEqual([key.mode & 0o7777, key.uid, key.gid], [0o640, 0, 42]);
  const ssh = statSync(join(dst, 'ssh'));
  assert.deepEqual([ssh.mode & 0o7777, ssh.uid, ssh.gid], [0o750, 7, 8]);
  assert.ok(lstatSync(join(dst, 'os-release')).isSymbolicLink());
  assert.equal(readlinkSync(join(dst, 'os-release')), '../usr/lib/os-release');
  // The destination must be new: the init never merges into an existing tree.
  assert.match(selftest('--selftest-copy-tree', src, dst).out, /error: mkdir .*File exists/);
});

// ---- a real boot: the tiny image's kernel, modules and /usr on a disk made with sgdisk ----

const kernelVersion = existsSync(join(TINY, 'usr/lib/modules')) ? readdirSync(join(TINY, 'usr/lib/modules'))[0] : undefined;
const bootable = !isRoot
  ? 'needs root'
  : !kernelVersion
    ? `needs ${TINY} (node dist/src/cli/main.js build recipes/tiny.yaml)`
    : ['qemu-system-x86_64', 'mkfs.erofs', 'veritysetup', 'sgdisk', 'mkfs.ext4', 'cpio', 'xz'].find((t) => !hasTool(t));
const MODULES = [
  'drivers/block/virtio_blk',
  'drivers/md/dm-mod',
  'drivers/md/dm-bufio',
  'lib/reed_solomon/reed_solomon',
  'drivers/md/dm-verity',
  'lib/libcrc32c',
  'fs/erofs/erofs',
];
const MiB = 1024 * 1024;

interface BootDisk {
  disk: string;
  initrd: string;
  rootHash: string;
  usrOffset: number;
  usrBytes: number;
}

async function makeBootDisk(): Promise<BootDisk> {
  const dir = join(work, 'boot');
  await mkdir(join(dir, 'ird/lib/modules'), { recursive: true });
  await mkdir(join(dir, 'ird/etc/cairn'), { recursive: true });
  const kdir = join(TINY, 'usr/lib/modules', kernelVersion!, 'kernel');
  const names: string[] = [];
  for (const m of MODULES) {
    const name = `${m.split('/').pop()}.ko`;
    await writeFile(join(dir, 'ird/lib/modules', name), execFileSync('xz', ['-dc', join(kdir, `${m}.ko.xz`)], { maxBuffer: 64 * MiB }));
    names.push(name);
  }
  await writeFile(join(dir, 'ird/etc/cairn/modules'), `# load order\n${names.join('\n')}\n`);
  execFileSync('cp', [INIT, join(dir, 'ird/init')]);
  const initrd = join(dir, 'initrd.cpio.xz');
  execFileSync('sh', ['-c', `cd ird && find . | LC_ALL=C sort | cpio -o -H newc --quiet | xz --check=crc32 > ${initrd}`], { cwd: dir });

  const usr = join(dir, 'usr.erofs');
  const hash = join(dir, 'usr.verity');
  sh('mkfs.erofs', ['-zlz4hc', '-T0', usr, join(TINY, 'usr')]);
  const rootHash = /Root hash:\s+([0-9a-f]{64})/.exec(sh('veritysetup', ['format', usr, hash, `--salt=${sha('boot')}`]))![1]!;
  const usrBytes = statSync(usr).size;
  const usrPart = Math.ceil(usrBytes / MiB) + 1;
  const rootMiB = 64;
  const disk = join(dir, 'disk.raw');
  const total = 1 + usrPart + 4 + rootMiB + 1;
  execFileSync('truncate', ['-s', `${total}M`, disk]);
  sh('sgdisk', [
    '-n1:1M:+' + usrPart + 'M',
    `-t1:${USR_TYPE}`,
    `-u1:${uuidOf(rootHash)}`,
    '-n2:0:+4M',
    `-t2:${VERITY_TYPE}`,
    `-u2:${uuidOf(rootHash.slice(32))}`,
    `-n3:0:+${rootMiB}M`,
    `-t3:${ROOT_TYPE}`,
    disk,
  ]);
  const root = join(dir, 'root.img');
  execFileSync('truncate', ['-s', `${rootMiB}M`, root]);
  sh('mkfs.ext4', ['-q', '-F', root]);
  const put = (file: string, offsetMiB: number) =>
    execFileSync('dd', [`if=${file}`, `of=${disk}`, 'bs=1M', `seek=${offsetMiB}`, 'conv=notrunc', 'status=none']);
  put(usr, 1);
  put(hash, 1 + usrPart);
  put(root, 1 + usrPart + 4);
  return { disk, initrd, rootHash, usrOffset: MiB, usrBytes };
}

/** Boots in QEMU until `until` appears on the serial console or the guest powers off. */
function boot(d: BootDisk, disk: string, cmdline: string, until: RegExp): Promise<string> {
  const kernel = join(TINY, 'boot', `vmlinuz-${kernelVersion}`);
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-accel',
      'tcg',
      '-m',
      '1024',
      '-no-reboot',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-kernel',
      kernel,
      '-initrd',
      d.initrd,
      '-append',
      `console=ttyS0 usrhash=${d.rootHash} cairn.on_failure=poweroff ${cmdline}`,
      '-drive',
      `file=${disk},if=virtio,format=raw`,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let log = '';
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      qemu.kill('SIGKILL');
      resolve(log);
    };
    const timer = setTimeout(done, 150_000);
    const onData = (b: Buffer) => {
      log += b.toString('latin1');
      if (until.test(log)) done();
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    qemu.on('exit', done);
  });
}

test(
  "QEMU: the init verifies /usr, fills /etc and starts the image's init; a flipped byte stops the boot",
  { skip: bootable || false, timeout: 400_000 },
  async () => {
    const d = await makeBootDisk();
    const good = await boot(d, d.disk, 'init=/usr/lib/cairn-tiny/init', /cairn-tiny: up|reboot: Power down/);
    assert.match(good, new RegExp(`cairn-init: verity usr ${d.rootHash} on /dev/vda1 \\(hash /dev/vda2\\) as /dev/mapper/usr`));
    assert.match(good, /cairn-init: first boot: \/etc filled from \/usr\/share\/factory\/etc/);
    assert.match(good, /cairn-tiny: up/);
    assert.doesNotMatch(good, /FATAL/);

    // The EROFS superblock lives in the first block: mounting reads it, verity refuses it.
    const tampered = `${d.disk}.tampered`;
    const buf = await readFile(d.disk);
    buf[d.usrOffset + 1024 + 8] ^= 0x01;
    await writeFile(tampered, buf);
    const bad = await boot(d, tampered, 'init=/usr/lib/cairn-tiny/init', /reboot: Power down|cairn-tiny: up/);
    assert.match(bad, /cairn-init: FATAL: verity: reading \/usr from \/dev\/mapper\/usr failed/);
    assert.match(bad, /reboot: Power down/);
    assert.doesNotMatch(bad, /cairn-tiny: up/);

    // Deep in the image, where only cairn.verify=full looks before the handover.
    buf[d.usrOffset + 1024 + 8] ^= 0x01;
    buf[d.usrOffset + d.usrBytes - 5000] ^= 0x01;
    await writeFile(tampered, buf);
    const deep = await boot(d, tampered, 'init=/usr/lib/cairn-tiny/init cairn.verify=full', /reboot: Power down|cairn-tiny: up/);
    assert.match(deep, /cairn-init: FATAL: verity: usr data near byte \d+ does not match usrhash/);
    assert.doesNotMatch(deep, /cairn-tiny: up/);
  },
);
