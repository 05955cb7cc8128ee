// The OCI image unpacker on layouts, archives and docker save archives made in the test: layers
// applied in order with whiteouts and opaque directories, the run configuration returned, and
// every hostile or damaged input refused before it lands outside the unpack folder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { hostOciArchitecture, parseImageRef, unpackOciImage } from '../../src/runtime/oci-image.js';
import { makeTar, type DebEntry } from '../fixtures/make-deb.js';
import { addImage, archiveOf, dockerSaveArchive, layoutArchive, makeLayout, sha256, writeBlob, writeIndex } from '../fixtures/oci-layout.js';

const work = await mkdtemp(join(tmpdir(), 'cairn-oci-'));
after(() => rm(work, { recursive: true, force: true }));
let serial = 0;
const fresh = (name: string) => join(work, `${name}-${serial++}`);
const hasTool = (tool: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** Every path below `root`: "dir", "file:CONTENT" or "link:TARGET". */
async function listing(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const key = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(path);
      if (st.isDirectory()) {
        out[key] = 'dir';
        await walk(path, key);
      } else if (st.isSymbolicLink()) out[key] = `link:${await readlink(path)}`;
      else out[key] = `file:${await readFile(path, 'utf8')}`;
    }
  };
  await walk(root, '');
  return out;
}

const BASE: DebEntry[] = [
  { path: 'bin', type: 'directory' },
  { path: 'bin/sh', content: '#!sh\n', mode: 0o755 },
  { path: 'bin/ash', type: 'link', linkname: 'bin/sh' },
  { path: 'etc', type: 'directory' },
  { path: 'etc/os-release', content: 'ID=test\n' },
  { path: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
  { path: 'var/cache', type: 'directory' },
  { path: 'var/cache/a', content: 'a' },
  { path: 'var/cache/sub', type: 'directory' },
  { path: 'var/cache/sub/b', content: 'b' },
  { path: 'var/run', type: 'symlink', linkname: '/run' },
  // No entry for opt/: parents a layer leaves out are made.
  { path: 'opt/thing', content: 'a file that becomes a folder' },
  { path: 'srv/data', type: 'directory' },
  { path: 'srv/data/x', content: 'x' },
];

const TOP: DebEntry[] = [
  { path: 'etc/.wh.passwd' },
  { path: 'var/cache/.wh..wh..opq' },
  { path: 'var/cache/new', content: 'new' },
  { path: 'opt/thing', type: 'directory' },
  { path: 'opt/thing/inside', content: 'in' },
  { path: 'srv/data', content: 'now a file' },
  { path: 'etc/added', content: 'added' },
  // Whiteouts hide only what lower layers have: not this layer's own file, nor anything absent.
  { path: 'etc/.wh.added' },
  { path: '.wh.nothing-here' },
];

const EXPECTED = {
  bin: 'dir',
  'bin/ash': 'file:#!sh\n',
  'bin/sh': 'file:#!sh\n',
  etc: 'dir',
  'etc/added': 'file:added',
  'etc/os-release': 'file:ID=test\n',
  opt: 'dir',
  'opt/thing': 'dir',
  'opt/thing/inside': 'file:in',
  srv: 'dir',
  'srv/data': 'file:now a file',
  var: 'dir',
  'var/cache': 'dir',
  'var/cache/new': 'file:new',
  'var/run': 'link:/run',
};

const CONFIG = { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], Env: ['PATH=/bin', 'A=b=c'], WorkingDir: '/srv', User: '1000:1000' };
const RUN = { args: ['/bin/sh', '-c', 'echo hi'], entrypoint: ['/bin/sh', '-c'], env: ['PATH=/bin', 'A=b=c'], cwd: '/srv', user: '1000:1000' };

async function refused(ref: string, pattern: RegExp, limits = {}): Promise<string> {
  const dest = fresh('dest');
  await assert.rejects(unpackOciImage(ref, dest, limits), (err: unknown) => {
    assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
  // All or nothing: the unpack folder is gone again.
  assert.equal(
    await stat(dest).then(
      () => true,
      () => false,
    ),
    false,
  );
  return dest;
}

test('an image layout unpacks layer over layer, with whiteouts, opaque folders and kind changes, and says how to run it', async () => {
  const layout = fresh('layout');
  await makeLayout(layout, { layers: [BASE, TOP], config: CONFIG });
  const dest = fresh('root');
  assert.deepEqual(await unpackOciImage(`oci:${layout}`, dest), RUN);
  assert.deepEqual(await listing(dest), EXPECTED);
  assert.equal((await stat(join(dest, 'bin/ash'))).ino, (await stat(join(dest, 'bin/sh'))).ino);
  assert.equal((await stat(join(dest, 'bin/sh'))).mode & 0o7777, 0o755);
});

test('the same image as an oci-archive with a tag, and as a docker save archive, unpacks to the same tree', async () => {
  const layout = fresh('layout');
  const extra: DebEntry[] = [{ path: 'etc/motd', content: 'hello\n' }];
  await makeLayout(layout, { layers: [BASE, TOP, extra, extra], config: CONFIG, tag: 'v1' });
  const fromLayout = fresh('root');
  assert.deepEqual(await unpackOciImage(`oci:${layout}:v1`, fromLayout), RUN);

  const archive = `${fresh('image')}.tar`;
  await writeFile(archive, await layoutArchive(layout));
  const fromArchive = fresh('root');
  assert.deepEqual(await unpackOciImage(`oci-archive:${archive}:v1`, fromArchive), RUN);

  // docker save stores the repeated layer once and links the second copy to it.
  const saved = `${fresh('docker')}.tar`;
  await writeFile(saved, await dockerSaveArchive({ layers: [BASE, TOP, extra, extra], config: CONFIG, repoTag: 'example/app:v1' }));
  const fromDocker = fresh('root');
  assert.deepEqual(await unpackOciImage(`oci-archive:${saved}:example/app:v1`, fromDocker), RUN);

  const expected = { ...EXPECTED, 'etc/motd': 'file:hello\n' };
  assert.deepEqual(await listing(fromLayout), expected);
  assert.deepEqual(await listing(fromArchive), expected);
  assert.deepEqual(await listing(fromDocker), expected);
});

for (const compression of ['none', 'zst'] as const) {
  test(
    `${compression === 'none' ? 'uncompressed' : 'zstd'} layers unpack too`,
    { skip: compression === 'zst' && !hasTool('zstd') && 'needs zstd' },
    async () => {
      const layout = fresh('layout');
      await makeLayout(layout, { layers: [BASE, TOP], compression });
      const dest = fresh('root');
      assert.deepEqual(await unpackOciImage(`oci:${layout}`, dest), { args: [], entrypoint: [], env: [], cwd: '/', user: '' });
      assert.deepEqual(await listing(dest), EXPECTED);
    },
  );
}

test('a blob that does not match its digest, a config that lies about a layer, or a wrong size is refused', async () => {
  const layout = fresh('layout');
  const image = await makeLayout(layout, { layers: [BASE, TOP] });
  const blob = join(layout, 'blobs/sha256', image.layerDigests[1]!.slice(7));
  const original = await readFile(blob);
  const tampered = Buffer.from(original);
  tampered[tampered.length - 5]! ^= 0x01;
  await writeFile(blob, tampered);
  await refused(`oci:${layout}`, new RegExp(`layer 2/2 \\(${image.layerDigests[1]}\\): .* does not match its digest`));
  await writeFile(blob, original);

  const index = await readFile(join(layout, 'index.json'), 'utf8');
  await writeFile(
    join(layout, 'index.json'),
    index.replace(/"size":(\d+)/, (_, n: string) => `"size":${Number(n) + 1}`),
  );
  await refused(`oci:${layout}`, /bytes, its descriptor says/);

  const lying = fresh('layout');
  await makeLayout(lying, { layers: [BASE, TOP], diffIds: [sha256('not the base layer'), sha256('nor this')] });
  await refused(`oci:${lying}`, /layer 1\/2 .* its content hashes to sha256:[0-9a-f]{64}, the image config says sha256:/);
});

test('paths out of the root, links through absolute or escaping symlinks, and device nodes are refused', async () => {
  const outside = fresh('outside');
  await mkdir(outside);
  const cases: [string, DebEntry[][], RegExp][] = [
    ['dot-dot', [[{ path: '../escape', content: 'x' }]], /entry "\.\/\.\.\/escape": the path contains a "\.\." component/],
    ['hard link out', [[{ path: 'pw', type: 'link', linkname: '../../../etc/passwd' }]], /the path contains a "\.\." component/],
    [
      'absolute symlink',
      [[{ path: 'etc', type: 'symlink', linkname: outside }], [{ path: 'etc/passwd', content: 'owned' }]],
      /entry "\.\/etc\/passwd": it goes through the symlink \/etc -> .*, an absolute link, which is never followed while writing/,
    ],
    [
      'relative escape',
      [
        [
          { path: 'up', type: 'symlink', linkname: '../../../../../..' },
          { path: 'up/x', content: 'x' },
        ],
      ],
      /leads above the root of the tree/,
    ],
    [
      'device',
      [
        [
          { path: 'dev', type: 'directory' },
          { path: 'dev/sda', type: 'character-device' },
        ],
      ],
      /character-device entries are refused/,
    ],
  ];
  for (const [name, layers, pattern] of cases) {
    const layout = fresh(name.replace(' ', '-'));
    await makeLayout(layout, { layers });
    await refused(`oci:${layout}`, pattern);
  }
  assert.deepEqual(await readdir(outside), []);
});

test('oversized content, decompression bombs, too many entries and oversized JSON are refused', async () => {
  const big = fresh('big');
  await makeLayout(big, { layers: [[{ path: 'big', content: Buffer.alloc(300_000, 1) }]], compression: 'none' });
  await refused(
    `oci:${big}`,
    /layer 1\/1 .*: (entry "\.\/big": the file is 300000 bytes, more than the image may still unpack|the image unpacks to more than the 200000 bytes cairn allows)/,
    { unpackedBytes: 200_000 },
  );

  // A small tar followed by 16 MiB of zeros, a few KiB gzipped: no header declares the size, the
  // decompressed stream itself is cut off.
  const bomb = fresh('bomb');
  const tarBytes = await makeTar([{ path: 'small', content: 'x' }]);
  await makeLayout(bomb, { layers: [Buffer.concat([tarBytes, Buffer.alloc(16 << 20)])] });
  await refused(`oci:${bomb}`, /layer 1\/1 .*: the image unpacks to more than the 1048576 bytes cairn allows/, { unpackedBytes: 1 << 20 });

  const archiveBomb = `${fresh('bomb')}.tar.gz`;
  await writeFile(archiveBomb, gzipSync(Buffer.concat([tarBytes, Buffer.alloc(16 << 20)])));
  await refused(`oci-archive:${archiveBomb}`, /archive .*: the image unpacks to more than the 1024 bytes cairn allows/, { archiveBytes: 1024, entries: 10 });

  const many = fresh('many');
  await makeLayout(many, { layers: [Array.from({ length: 20 }, (_, i) => ({ path: `f${i}`, content: String(i) }))] });
  await refused(`oci:${many}`, /more entries than cairn unpacks/, { entries: 10 });
  await refused(`oci:${many}`, /index\.json is \d+ bytes, more than the 64 cairn reads as JSON/, { jsonBytes: 64 });
});

test("a layout with several images needs a tag; a multi-platform index picks this host's image", async () => {
  const layout = fresh('layout');
  await mkdir(layout);
  const a = await addImage(layout, { layers: [[{ path: 'which', content: 'a' }]], tag: 'a' });
  const b = await addImage(layout, { layers: [[{ path: 'which', content: 'b' }]], tag: 'b', config: { Cmd: ['/b'] } });
  await writeIndex(layout, [a.descriptor, b.descriptor]);
  await refused(`oci:${layout}`, /holds 2 images: name one with :TAG/);
  await refused(`oci:${layout}:c`, /has no image tagged "c"/);
  const dest = fresh('root');
  assert.deepEqual(await unpackOciImage(`oci:${layout}:b`, dest), { args: ['/b'], entrypoint: [], env: [], cwd: '/', user: '' });
  assert.deepEqual(await listing(dest), { which: 'file:b' });

  const multi = fresh('multi');
  await mkdir(multi);
  const other = hostOciArchitecture() === 's390x' ? 'riscv64' : 's390x';
  const theirs = await addImage(multi, { layers: [[{ path: 'arch', content: other }]], architecture: other });
  const ours = await addImage(multi, { layers: [[{ path: 'arch', content: hostOciArchitecture() }]], architecture: hostOciArchitecture() });
  const nested = await writeBlob(
    multi,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { ...theirs.descriptor, platform: { os: 'linux', architecture: other } },
        { ...ours.descriptor, platform: { os: 'linux', architecture: hostOciArchitecture() } },
      ],
    }),
  );
  await writeIndex(multi, [
    { mediaType: 'application/vnd.oci.image.index.v1+json', ...nested, annotations: { 'org.opencontainers.image.ref.name': 'latest' } },
  ]);
  const picked = fresh('root');
  await unpackOciImage(`oci:${multi}:latest`, picked);
  assert.deepEqual(await listing(picked), { arch: `file:${hostOciArchitecture()}` });

  const foreign = fresh('foreign');
  await makeLayout(foreign, { layers: [[{ path: 'x', content: 'x' }]], architecture: other });
  await refused(`oci:${foreign}`, new RegExp(`the image is for ${other}, this host is ${hostOciArchitecture()}`));
});

test('references name an existing layout or archive; the unpack folder must be new or empty', async () => {
  assert.throws(() => parseImageRef('docker://debian'), /is not an image reference cairn reads/);
  assert.throws(() => parseImageRef(`oci:${join(work, 'missing')}:tag`), /does not exist/);
  const layout = fresh('with:colon');
  await makeLayout(layout, { layers: [[{ path: 'x', content: 'x' }]], tag: 'v2' });
  assert.deepEqual(parseImageRef(`oci:${layout}:v2`), { transport: 'oci', path: layout, tag: 'v2' });
  assert.deepEqual(parseImageRef(`oci:${layout}`), { transport: 'oci', path: layout, tag: null });

  const busy = fresh('busy');
  await mkdir(busy);
  await writeFile(join(busy, 'keep'), 'mine');
  await assert.rejects(unpackOciImage(`oci:${layout}`, busy), /is not empty/);
  assert.equal(await readFile(join(busy, 'keep'), 'utf8'), 'mine');
  // An empty folder the caller made (a mount point, say) stays, emptied again, when unpacking fails.
  const prepared = fresh('prepared');
  await mkdir(prepared);
  const broken = fresh('broken');
  await makeLayout(broken, {
    layers: [
      [
        { path: 'a', content: 'a' },
        { path: '../b', content: 'b' },
      ],
    ],
  });
  await assert.rejects(unpackOciImage(`oci:${broken}`, prepared), /"\.\." component/);
  assert.deepEqual(await readdir(prepared), []);

  const escaping = `${fresh('docker')}.tar`;
  const config = JSON.stringify({ architecture: hostOciArchitecture(), os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256('x')] } });
  await writeFile(
    escaping,
    await archiveOf([
      { path: `${sha256(config).slice(7)}.json`, data: config },
      { path: 'manifest.json', data: JSON.stringify([{ Config: `${sha256(config).slice(7)}.json`, Layers: ['../../etc/shadow'] }]) },
    ]),
  );
  await refused(
    `oci-archive:${escaping}`,
    /manifest\.json of the docker archive: names the path "\.\.\/\.\.\/etc\/shadow": the path contains a "\.\." component/,
  );
  await refused(`oci-archive:${join(layout, 'index.json')}`, /not a readable tar archive|is not an image/);
});

const hasUmoci = hasTool('umoci') && hasTool('skopeo');
test(
  "an image made by umoci (with a deletion as whiteout) unpacks from its layout and from skopeo's oci-archive",
  { skip: !hasUmoci && 'needs umoci and skopeo' },
  async () => {
    const layout = fresh('umoci');
    const bundle = fresh('bundle');
    const rootless = process.getuid?.() !== 0 ? ['--rootless'] : [];
    const umoci = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    umoci('init', '--layout', layout);
    umoci('new', '--image', `${layout}:app`);
    umoci('unpack', ...rootless, '--image', `${layout}:app`, bundle);
    await mkdir(join(bundle, 'rootfs/etc'), { recursive: true });
    await writeFile(join(bundle, 'rootfs/etc/hello'), 'hello from umoci\n');
    await writeFile(join(bundle, 'rootfs/etc/gone'), 'deleted in the next layer\n');
    umoci('repack', '--image', `${layout}:app`, bundle);
    await rm(join(bundle, 'rootfs/etc/gone'));
    umoci('repack', '--image', `${layout}:app`, bundle);
    umoci(
      'config',
      '--image',
      `${layout}:app`,
      '--config.entrypoint',
      '/bin/hello',
      '--config.cmd',
      'world',
      '--config.env',
      'GREETING=hi',
      '--config.workingdir',
      '/etc',
    );

    const fromLayout = fresh('root');
    const run = await unpackOciImage(`oci:${layout}:app`, fromLayout);
    assert.deepEqual(run, { args: ['/bin/hello', 'world'], entrypoint: ['/bin/hello'], env: ['GREETING=hi'], cwd: '/etc', user: '' });
    const tree = await listing(fromLayout);
    assert.equal(tree['etc/hello'], 'file:hello from umoci\n');
    assert.equal(tree['etc/gone'], undefined);

    const archive = `${fresh('skopeo')}.tar`;
    execFileSync('skopeo', ['copy', '--quiet', `oci:${layout}:app`, `oci-archive:${archive}:app`], { stdio: ['ignore', 'ignore', 'pipe'] });
    const fromArchive = fresh('root');
    assert.deepEqual(await unpackOciImage(`oci-archive:${archive}:app`, fromArchive), run);
    assert.deepEqual(await listing(fromArchive), tree);
  },
);
