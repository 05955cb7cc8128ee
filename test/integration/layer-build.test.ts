// `cairn layer build` and mountLayers against a Debian repository the test makes and serves on
// loopback: only what the base lacks goes into the layer, files outside /usr are left out and
// named, the build is reproducible whether the base is named by its recipe or its build folder,
// the hash tree agrees with veritysetup, and a mounted layer shows its files while a tampered,
// mislabelled or foreign one is refused. Needs root (owners, loop devices, mount) and
// erofs-utils + cryptsetup-bin.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FetchCache } from '../../src/debian/fetch-cache.js';
import { readLockfile } from '../../src/debian/lockfile.js';
import { CairnError } from '../../src/errors.js';
import { baseRecords } from '../../src/layer/base.js';
import { LAYER_MOUNT_ROOT, mountLayers } from '../../src/runtime/layers.js';
import { createTestRepo, serveDir, type TestRepo, type TestServer } from '../fixtures/debian-repo.js';
import { prngBytes } from '../fixtures/seeded-bytes.js';
import { needs as requires } from '../fixtures/requirements.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const needs = requires({ root: true, tools: ['mkfs.erofs', 'veritysetup', 'losetup'] });

let repo: TestRepo;
let server: TestServer;
let work: string;

const pkg = (control: Record<string, string>, files: { path: string; content: string | Buffer; mode?: number }[]) => ({
  control: { Architecture: 'amd64', 'Installed-Size': '10', ...control },
  files,
});

before(async () => {
  if (needs.skip) return;
  work = await mkdtemp(join(tmpdir(), 'cairn-layer-'));
  repo = await createTestRepo({
    packages: [
      pkg({ Package: 'libc', Version: '1.0', Provides: 'libc-any' }, [{ path: './usr/lib/libc.so', content: 'libc 1.0' }]),
      pkg({ Package: 'sh', Version: '1', Depends: 'libc' }, [{ path: './bin/sh', content: 'sh', mode: 0o755 }]),
      pkg({ Package: 'other', Version: '1' }, [{ path: './usr/bin/other', content: 'other', mode: 0o755 }]),
      pkg({ Package: 'app', Version: '2.0', Depends: 'libc-any, libc (>= 1.0), libapp' }, [
        { path: './usr/bin/app', content: '#!/bin/sh\necho app\n', mode: 0o755 },
        // Enough data for a hash tree with a level above the data blocks.
        { path: './usr/share/app/blob', content: prngBytes(200_000, 6) },
        { path: './etc/app.conf', content: 'port=80\n' },
        { path: './var/lib/app/state', content: 'state' },
        { path: './srv/app/data', content: 'data' },
      ]),
      pkg({ Package: 'libapp', Version: '2.0' }, [{ path: './usr/lib/libapp.so', content: 'libapp' }]),
      pkg({ Package: 'rival-sh', Version: '1', Conflicts: 'sh' }, [{ path: './usr/bin/rival', content: 'r' }]),
      pkg({ Package: 'linux-image-test', Version: '6.12-1' }, [
        { path: './boot/config-6.12-test', content: 'CONFIG_EROFS_FS=m\nCONFIG_DM_VERITY=y\n' },
        { path: './boot/vmlinuz-6.12-test', content: 'kernel' },
      ]),
    ],
  });
  server = await serveDir(repo.dir);
  await writeFile(join(work, 'kernel.config'), 'CONFIG_EROFS_FS=m\n');
  for (const [name, packages] of [
    ['base', 'sh'],
    ['other-base', 'sh, other'],
  ]) {
    await writeFile(
      join(work, `${name}.yaml`),
      [
        `name: ${name}`,
        'version: 1.0.0',
        'base:',
        `  mirror: ${server.url}`,
        `  suite: ${repo.suite}`,
        `  keyring: ${repo.keyringPath}`,
        '  essential: false',
        `packages: [${packages}]`,
        'kernel:',
        '  package: linux-image-test',
        '  config: kernel.config',
        '',
      ].join('\n'),
    );
  }
  await writeFile(
    join(work, 'app.yaml'),
    ['name: app', 'version: "2.0"', 'base: base.yaml', `keyring: ${repo.keyringPath}`, 'packages: [app, libc]', ''].join('\n'),
  );
});

after(async () => {
  await server?.close();
  await repo?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

// Asynchronous on purpose: the repository server runs in this process and must keep answering.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the CLI's JSON, asserted field by field
function cairn(...args: string[]): Promise<{ status: number; stdout: string; stderr: string; json: any }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args, '--cache', join(work, 'cache')], { encoding: 'utf8', cwd: work }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ status, stdout, stderr, json: status === 0 && stdout.startsWith('{') ? JSON.parse(stdout) : null });
    });
  });
}

const baseUsr = () => join(work, 'images/base/1.0.0/rootfs/usr');

test('the base image carries its lock, and a layer holds only what the base lacks, within /usr', needs, async () => {
  for (const name of ['base', 'other-base']) {
    const built = await cairn('build', `${name}.yaml`, '--stage', 'rootfs', '--out', 'images', '--json');
    assert.equal(built.status, 0, built.stderr);
  }
  const inImage = await readFile(join(baseUsr(), 'lib/cairn/cairn.lock'));
  assert.ok(inImage.equals(await readFile(join(work, 'base.lock'))), 'the image holds the lock it was built from');

  const r = await cairn('layer', 'build', 'app.yaml', '--out', 'layers/a', '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(
    r.json.packages.map((p: { name: string }) => p.name),
    ['app', 'libapp'],
  );
  assert.deepEqual(r.json.notes, ['libc 1.0 is already in the base image']);
  assert.deepEqual(r.json.dropped, ['/srv/app/data', '/var/lib/app/state']);
  assert.deepEqual(r.json.base, { name: 'base', lockSha256: createHash('sha256').update(inImage).digest('hex') });
  assert.match(r.stderr, /left out 2 files outside \/usr \(a layer holds \/usr only\): \/srv\/app\/data, \/var\/lib\/app\/state/);
  assert.deepEqual((await readdir(join(work, 'layers/a'))).sort(), ['app_2.0.layer', 'app_2.0.verity', 'layer.json']);
  const metadata = JSON.parse(await readFile(join(work, 'layers/a/layer.json'), 'utf8'));
  assert.equal(metadata.image.size, (await stat(join(work, 'layers/a/app_2.0.layer'))).size);
  execFileSync('veritysetup', ['verify', join(work, 'layers/a/app_2.0.layer'), join(work, 'layers/a/app_2.0.verity'), metadata.verity.rootHash]);
});

test("the same layer built for the base's build folder is byte for byte the same", needs, async () => {
  const r = await cairn('layer', 'build', 'app.yaml', '--base', 'images/base/1.0.0', '--out', 'layers/b', '--json');
  assert.equal(r.status, 0, r.stderr);
  for (const file of ['app_2.0.layer', 'app_2.0.verity', 'layer.json']) {
    assert.ok((await readFile(join(work, 'layers/a', file))).equals(await readFile(join(work, 'layers/b', file))), `${file} differs`);
  }
});

test('a layer that adds nothing, or conflicts with the base, is refused at build time', needs, async () => {
  await writeFile(join(work, 'empty.yaml'), 'name: empty\nversion: "1"\nbase: base.yaml\npackages: [sh]\n');
  const empty = await cairn('layer', 'build', 'empty.yaml', '--out', 'layers/empty');
  assert.equal(empty.status, 1);
  assert.match(empty.stderr, /every package .*\/empty\.yaml asks for is already in the base base: the layer would be empty/);
  await writeFile(join(work, 'rival.yaml'), 'name: rival\nversion: "1"\nbase: base.yaml\npackages: [rival-sh]\n');
  const rival = await cairn('layer', 'build', 'rival.yaml', '--out', 'layers/rival');
  assert.equal(rival.status, 1);
  assert.match(rival.stderr, /cannot install rival-sh 1 \(requested\): it conflicts with "sh", which sh 1 \(in the base image\) is/);
});

test('base packages the archive no longer lists are read from their cached .deb, or named when nothing has them', needs, async () => {
  const lock = (await readLockfile(join(work, 'base.lock')))!;
  const cache = new FetchCache(join(work, 'cache'));
  const records = await baseRecords(lock, [], cache);
  assert.deepEqual(records.map((r) => [r.name, r.version, r.provides.map((p) => p.name)]).sort(), [
    ['libc', '1.0', ['libc-any']],
    ['linux-image-test', '6.12-1', []],
    ['sh', '1', []],
  ]);
  const gone = { ...lock, origin: { ...lock.origin, mirror: `${server.url}/moved` } };
  await assert.rejects(
    baseRecords(gone, [], new FetchCache(join(work, 'empty-cache'))),
    /the archive no longer has 3 of the base's packages \(libc 1\.0, linux-image-test 6\.12-1, sh 1…\) and the cache cannot get them/,
  );
});

async function mountsUnder(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((point) => point.startsWith(dir));
}

function loopsFor(image: string): string {
  return execFileSync('losetup', ['-j', image], { encoding: 'utf8' }).trim();
}

test('a mounted layer shows its files over the base; release unmounts it and frees its loop device', needs, async () => {
  const layer = join(work, 'layers/a');
  const mounted = await mountLayers([layer], baseUsr());
  try {
    assert.equal(mounted.dirs.length, 1);
    assert.equal(await readFile(join(mounted.dirs[0]!, 'bin/app'), 'utf8'), '#!/bin/sh\necho app\n');
    assert.equal(await readFile(join(mounted.dirs[0]!, 'share/factory/etc/app.conf'), 'utf8'), 'port=80\n');
    await assert.rejects(writeFile(join(mounted.dirs[0]!, 'bin/new'), 'x'), { code: 'EROFS' });
    assert.deepEqual(await mountsUnder(mounted.dirs[0]!), [mounted.dirs[0]]);
  } finally {
    await mounted.release();
  }
  await mounted.release();
  assert.deepEqual(await mountsUnder(mounted.dirs[0]!), []);
  assert.equal(
    await stat(mounted.dirs[0]!).then(
      () => true,
      () => false,
    ),
    false,
  );
  assert.equal(loopsFor(join(layer, 'app_2.0.layer')), '');
});

async function refusedMount(layer: string, usr: string, pattern: RegExp): Promise<void> {
  const before = (await readdir(LAYER_MOUNT_ROOT).catch(() => [])).sort();
  await assert.rejects(mountLayers([layer], usr), (err: unknown) => {
    assert.ok(err instanceof CairnError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
  assert.deepEqual((await readdir(LAYER_MOUNT_ROOT).catch(() => [])).sort(), before, 'no mount folder is left behind');
}

test('a layer with a changed byte, a wrong root hash or another base is refused before it is mounted', needs, async () => {
  const tampered = join(work, 'layers/tampered');
  await cp(join(work, 'layers/a'), tampered, { recursive: true });
  const image = join(tampered, 'app_2.0.layer');
  const bytes = await readFile(image);
  bytes[1024 + 7]! ^= 0x20;
  await writeFile(image, bytes);
  await refusedMount(
    tampered,
    baseUsr(),
    /layer app 2\.0 \(.*tampered\/layer\.json\) is refused: it does not match its root hash [0-9a-f]{64}: .*data block 0 does not match the hash tree/,
  );
  assert.equal(loopsFor(image), '');

  const relabelled = join(work, 'layers/relabelled');
  await cp(join(work, 'layers/a'), relabelled, { recursive: true });
  const metadata = JSON.parse(await readFile(join(relabelled, 'layer.json'), 'utf8'));
  metadata.verity.rootHash = createHash('sha256').update('another layer').digest('hex');
  await writeFile(join(relabelled, 'layer.json'), JSON.stringify(metadata));
  await refusedMount(relabelled, baseUsr(), /is refused: it does not match its root hash .*hash block \d+ does not match its parent/);

  await refusedMount(
    join(work, 'layers/a'),
    join(work, 'images/other-base/1.0.0/rootfs/usr'),
    /layer app 2\.0 \(.*\) was built for base base \(lock [0-9a-f]{12}\), but .*other-base\/1\.0\.0\/rootfs\/usr is other-base \(lock [0-9a-f]{12}\)/,
  );
  const bare = join(work, 'bare-usr');
  await mkdir(bare);
  await refusedMount(join(work, 'layers/a'), bare, /bare-usr has no lib\/cairn\/cairn\.lock/);
});
