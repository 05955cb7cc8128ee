// The /usr image and its hash tree against the reference tools: cairn's hash device must equal
// `veritysetup format`'s byte for byte, be accepted by `veritysetup verify` and by the kernel
// (veritysetup open), and the EROFS image must be reproducible, pass fsck.erofs and mount with
// the tree's contents, owners and modes. Needs root (owners, mknod, loop devices, dm) and
// erofs-utils + cryptsetup-bin.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { buildUsrImage } from '../../src/image/erofs.js';
import { computeVerity, verifyImage } from '../../src/image/verity.js';
import { kernelHas, needs as requires } from '../fixtures/requirements.js';

const run = promisify(execFile);
const needs = requires({ root: true, tools: ['mkfs.erofs', 'fsck.erofs', 'veritysetup'] });
const EPOCH = 1_720_000_000;
const B = 4096;
const UUID = '5e1f0a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-erofs-verity-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function veritysetupFormat(data: string, hash: string, salt: string): Promise<string> {
  const { stdout } = await run('veritysetup', ['format', data, hash, `--salt=${salt}`, `--uuid=${UUID}`, '--data-block-size=4096', '--hash-block-size=4096']);
  const root = /Root hash:\s*([0-9a-f]{64})/.exec(stdout);
  assert.ok(root, `no root hash in veritysetup output:\n${stdout}`);
  return root[1]!;
}

async function veritysetupVerifies(data: string, hash: string, root: string): Promise<boolean> {
  try {
    await run('veritysetup', ['verify', data, hash, root]);
    return true;
  } catch {
    return false;
  }
}

// 1 block: no levels; 128/129: one level / two levels; 16385: three levels (64 MiB + 4 KiB).
for (const blocks of [1, 2, 127, 128, 129, 1000, 128 * 128 + 1]) {
  test(`hash device for ${blocks} data blocks equals veritysetup format's`, needs, async () => {
    const dir = await mkdtemp(join(work, `v${blocks}-`));
    const data = join(dir, 'data');
    await writeFile(data, randomBytes(blocks * B));
    const salt = randomBytes(32);

    const ours = await computeVerity(data, join(dir, 'cairn.verity'), { salt, uuid: UUID });
    const theirRoot = await veritysetupFormat(data, join(dir, 'ref.verity'), salt.toString('hex'));
    assert.equal(ours.rootHash, theirRoot);
    const [mine, theirs] = await Promise.all([readFile(join(dir, 'cairn.verity')), readFile(join(dir, 'ref.verity'))]);
    assert.equal(mine.length, theirs.length);
    assert.ok(mine.equals(theirs), 'hash devices differ');
    assert.equal(await veritysetupVerifies(data, join(dir, 'cairn.verity'), ours.rootHash), true);
    await rm(dir, { recursive: true });
  });
}

test('a flipped data byte fails veritysetup verify and cairn names the block', needs, async () => {
  const dir = await mkdtemp(join(work, 'flip-'));
  const data = join(dir, 'data');
  await writeFile(data, randomBytes(700 * B));
  const { rootHash } = await computeVerity(data, join(dir, 'hash'));
  const bytes = await readFile(data);
  bytes[513 * B + 77] ^= 0x80;
  await writeFile(data, bytes);
  assert.equal(await veritysetupVerifies(data, join(dir, 'hash'), rootHash), false);
  const result = await verifyImage(data, join(dir, 'hash'), rootHash);
  assert.deepEqual(!result.ok && [result.problem, result.block], ['data-block', 513]);
});

test('cairn verifies a hash device made by veritysetup with its random salt', needs, async () => {
  const dir = await mkdtemp(join(work, 'theirs-'));
  const data = join(dir, 'data');
  await writeFile(data, randomBytes(300 * B));
  const { stdout } = await run('veritysetup', ['format', data, join(dir, 'hash')]);
  const root = /Root hash:\s*([0-9a-f]{64})/.exec(stdout)![1]!;
  const result = await verifyImage(data, join(dir, 'hash'), root);
  assert.equal(result.ok, true);
  assert.equal(result.ok && result.superblock.dataBlocks, 300);
});

// Some build hosts (VMs with minimal kernels) have no device-mapper; the boot test covers dm-verity there.
const hasDeviceMapper = kernelHas({ misc: 'device-mapper' });
test(
  "the kernel opens cairn's tree: data read through dm-verity equals the image",
  { skip: needs.skip || (!hasDeviceMapper && 'this kernel has no device-mapper') },
  async () => {
    const dir = await mkdtemp(join(work, 'dm-'));
    const data = join(dir, 'data');
    const content = randomBytes(400 * B);
    await writeFile(data, content);
    const { rootHash } = await computeVerity(data, join(dir, 'hash'));
    const name = `cairn-test-${process.pid}-${randomBytes(3).toString('hex')}`;
    await run('veritysetup', ['open', data, name, join(dir, 'hash'), rootHash]);
    try {
      assert.ok((await readFile(`/dev/mapper/${name}`)).equals(content));
    } finally {
      await run('veritysetup', ['close', name]);
    }
  },
);

interface Entry {
  path: string;
  kind: 'dir' | 'file' | 'link' | 'hardlink' | 'fifo' | 'chr';
  mode: number;
  uid: number;
  gid: number;
  content?: string;
  target?: string;
}

// Owners, setuid/sticky bits, links, a hard link, special files and an empty file: what a /usr holds.
const TREE: Entry[] = [
  { path: 'bin', kind: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { path: 'bin/tool', kind: 'file', mode: 0o4755, uid: 0, gid: 0, content: '#!/bin/sh\necho tool\n' },
  { path: 'bin/alias', kind: 'link', mode: 0o777, uid: 0, gid: 0, target: 'tool' },
  { path: 'bin/same', kind: 'hardlink', mode: 0o4755, uid: 0, gid: 0, target: 'bin/tool' },
  { path: 'lib', kind: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { path: 'lib/big.so', kind: 'file', mode: 0o644, uid: 0, gid: 0, content: 'x'.repeat(300_000) },
  { path: 'lib/empty', kind: 'file', mode: 0o600, uid: 0, gid: 0, content: '' },
  { path: 'share', kind: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { path: 'share/owned', kind: 'dir', mode: 0o2750, uid: 101, gid: 102 },
  { path: 'share/owned/file', kind: 'file', mode: 0o640, uid: 101, gid: 102, content: 'secret\n' },
  { path: 'share/tmp', kind: 'dir', mode: 0o1777, uid: 0, gid: 0 },
  { path: 'share/pipe', kind: 'fifo', mode: 0o644, uid: 0, gid: 0 },
  { path: 'share/null', kind: 'chr', mode: 0o666, uid: 0, gid: 0 },
];

/** Writes TREE as <root>/usr, in the given order of entries and with arbitrary mtimes. */
async function makeRoot(root: string, order: Entry[], mtime: number): Promise<void> {
  await mkdir(join(root, 'usr'), { recursive: true });
  const dirs = order.filter((e) => e.kind === 'dir').sort((a, b) => a.path.length - b.path.length);
  for (const entry of [...dirs, ...order.filter((e) => e.kind !== 'dir')]) {
    const path = join(root, 'usr', entry.path);
    if (entry.kind === 'dir') await mkdir(path);
    else if (entry.kind === 'file') await writeFile(path, entry.content!);
    else if (entry.kind === 'link') await symlink(entry.target!, path);
    else if (entry.kind === 'hardlink') continue;
    else if (entry.kind === 'fifo') await run('mkfifo', [path]);
    else await run('mknod', [path, 'c', '1', '3']);
    if (entry.kind !== 'link') {
      await chown(path, entry.uid, entry.gid);
      await chmod(path, entry.mode);
    }
  }
  for (const entry of order.filter((e) => e.kind === 'hardlink')) await link(join(root, 'usr', entry.target!), join(root, 'usr', entry.path));
  for (const entry of order) {
    if (entry.kind !== 'link') await utimes(join(root, 'usr', entry.path), mtime, mtime);
  }
}

async function withMount<T>(image: string, use: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(work, 'mnt-'));
  const { stdout } = await run('losetup', ['--find', '--show', '--read-only', image]);
  const device = stdout.trim();
  try {
    await run('mount', ['-t', 'erofs', '-o', 'ro', device, dir]);
    try {
      return await use(dir);
    } finally {
      await run('umount', [dir]);
    }
  } finally {
    await run('losetup', ['-d', device]);
  }
}

test("the /usr image is reproducible, passes fsck.erofs and mounts with the tree's files, owners and modes", needs, async () => {
  // Different creation order and mtimes: neither may show in the image.
  await makeRoot(join(work, 'tree-a'), TREE, 1_600_000_000);
  await makeRoot(join(work, 'tree-b'), [...TREE].reverse(), 1_700_000_123);
  const a = await buildUsrImage({ rootfs: join(work, 'tree-a'), output: join(work, 'a.erofs'), sourceDateEpoch: EPOCH, compression: null });
  // A SOURCE_DATE_EPOCH left in the environment must not change the image either.
  process.env.SOURCE_DATE_EPOCH = '1234';
  const b = await buildUsrImage({ rootfs: join(work, 'tree-b'), output: join(work, 'b.erofs'), sourceDateEpoch: EPOCH, compression: null }).finally(() => {
    delete process.env.SOURCE_DATE_EPOCH;
  });
  assert.equal(a.uuid, b.uuid);
  assert.ok((await readFile(join(work, 'a.erofs'))).equals(await readFile(join(work, 'b.erofs'))), 'images differ');
  assert.equal(a.size, (await lstat(join(work, 'a.erofs'))).size);
  assert.equal(a.size % B, 0);
  await run('fsck.erofs', [join(work, 'a.erofs')]);
  const blkid = await run('blkid', ['-o', 'value', '-s', 'UUID', join(work, 'a.erofs')]).catch(() => null);
  if (blkid) assert.equal(blkid.stdout.trim(), a.uuid);

  await withMount(join(work, 'a.erofs'), async (mnt) => {
    assert.deepEqual((await readdir(mnt)).sort(), ['bin', 'lib', 'share']);
    for (const entry of TREE) {
      const path = join(mnt, entry.path);
      const st = await lstat(path);
      assert.equal(st.uid, entry.uid, entry.path);
      assert.equal(st.gid, entry.gid, entry.path);
      assert.equal(st.mtimeMs / 1000, EPOCH, entry.path);
      if (entry.kind !== 'link') assert.equal(st.mode & 0o7777, entry.mode, entry.path);
      if (entry.kind === 'file') assert.equal(await readFile(path, 'utf8'), entry.content, entry.path);
      if (entry.kind === 'link') assert.equal(await readlink(path), entry.target);
      if (entry.kind === 'hardlink') assert.equal(st.ino, (await lstat(join(mnt, entry.target!))).ino);
      if (entry.kind === 'fifo') assert.ok(st.isFIFO());
      if (entry.kind === 'chr') assert.equal(st.rdev, (await lstat('/dev/null')).rdev);
    }
  });

  // One changed byte changes the image and its derived UUID.
  await writeFile(join(work, 'tree-b', 'usr', 'share', 'owned', 'file'), 'secreT\n');
  const c = await buildUsrImage({ rootfs: join(work, 'tree-b'), output: join(work, 'c.erofs'), sourceDateEpoch: EPOCH, compression: null });
  assert.notEqual(c.uuid, a.uuid);
  // A given UUID and another epoch are used as given.
  const d = await buildUsrImage({ rootfs: join(work, 'tree-a'), output: join(work, 'd.erofs'), sourceDateEpoch: EPOCH + 1, compression: null, uuid: UUID });
  assert.equal(d.uuid, UUID);
  assert.ok(!(await readFile(join(work, 'd.erofs'))).equals(await readFile(join(work, 'a.erofs'))));
});

test('a compressed /usr image is reproducible, smaller, and reads back', needs, async () => {
  await makeRoot(join(work, 'tree-z'), TREE, 1_650_000_000);
  const plain = await buildUsrImage({ rootfs: join(work, 'tree-z'), output: join(work, 'z0.erofs'), sourceDateEpoch: EPOCH, compression: null });
  const one = await buildUsrImage({ rootfs: join(work, 'tree-z'), output: join(work, 'z1.erofs'), sourceDateEpoch: EPOCH, compression: 'lz4hc,9' });
  const two = await buildUsrImage({ rootfs: join(work, 'tree-z'), output: join(work, 'z2.erofs'), sourceDateEpoch: EPOCH, compression: 'lz4hc,9' });
  assert.equal(one.size, two.size);
  assert.ok((await readFile(join(work, 'z1.erofs'))).equals(await readFile(join(work, 'z2.erofs'))));
  assert.ok(one.size < plain.size, `compressed ${one.size} not below ${plain.size}`);
  await run('fsck.erofs', ['--extract', join(work, 'z1.erofs')]);
  await withMount(join(work, 'z1.erofs'), async (mnt) => {
    assert.equal(await readFile(join(mnt, 'lib', 'big.so'), 'utf8'), 'x'.repeat(300_000));
  });
});

test('bad compression, epoch, UUID or tree are clear errors that leave no image behind', needs, async () => {
  await makeRoot(join(work, 'tree-bad'), TREE.slice(0, 2), 1);
  const out = await mkdtemp(join(work, 'out-'));
  const attempt = (overrides: Partial<Parameters<typeof buildUsrImage>[0]>) =>
    buildUsrImage({ rootfs: join(work, 'tree-bad'), output: join(out, 'usr.erofs'), sourceDateEpoch: EPOCH, compression: null, ...overrides });
  await assert.rejects(
    attempt({ compression: 'zstd' }),
    (err: unknown) => err instanceof CairnError && /"zstd" is not supported/.test(err.message) && /lz4/.test(err.hint ?? ''),
  );
  await assert.rejects(attempt({ compression: 'lz4hc,40' }), /level "40" is not valid for lz4hc/);
  await assert.rejects(
    attempt({ compression: 'lz4,1' }),
    (err: unknown) => err instanceof CairnError && /level "1" is not valid for lz4$/.test(err.message) && /takes no level/.test(err.hint ?? ''),
  );
  await assert.rejects(attempt({ sourceDateEpoch: -5 }), CairnError);
  await assert.rejects(attempt({ uuid: 'nope' }), /not a UUID/);
  await assert.rejects(attempt({ rootfs: join(work, 'missing') }), /is not a directory/);
  await mkdir(join(work, 'tree-link'));
  await symlink(join(work, 'tree-bad', 'usr'), join(work, 'tree-link', 'usr'));
  await assert.rejects(attempt({ rootfs: join(work, 'tree-link') }), /is not a directory/);
  assert.deepEqual(await readdir(out), []);
});

const tiny = new URL('../../../images/tiny/0.1.0/rootfs/', import.meta.url).pathname;
test(
  "the tiny recipe's /usr: image plus cairn's tree pass veritysetup verify",
  { skip: needs.skip || (!existsSync(join(tiny, 'usr')) && 'build recipes/tiny.yaml first') },
  async () => {
    const image = join(work, 'tiny.erofs');
    await buildUsrImage({ rootfs: tiny, output: image, sourceDateEpoch: EPOCH, compression: null });
    await run('fsck.erofs', [image]);
    const verity = await computeVerity(image, join(work, 'tiny.verity'));
    assert.equal(await veritysetupVerifies(image, join(work, 'tiny.verity'), verity.rootHash), true);
    assert.equal((await verifyImage(image, join(work, 'tiny.verity'), verity.rootHash)).ok, true);
  },
);
