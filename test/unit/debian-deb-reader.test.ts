import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { entryPath, forEachDataEntry, readDebControl, readDebFile, readDebLayout } from '../../src/debian/deb-reader.js';
import { CairnError } from '../../src/errors.js';
import { arArchive, compress, makeDeb, makeTar, type Compression } from '../fixtures/make-deb.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-deb-reader-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function save(data: Buffer): Promise<string> {
  const path = join(dir, `test-${counter++}.deb`);
  await writeFile(path, data);
  return path;
}

const control = { Package: 'hello', Version: '1:2.10-3', Architecture: 'amd64', 'Installed-Size': '12', Description: 'greets\n second line' };

async function sampleDeb(compression: Compression): Promise<Buffer> {
  return makeDeb({
    control,
    compression,
    controlFiles: [{ path: './conffiles', content: '/etc/hello.conf\n' }],
    files: [
      { path: './usr/', type: 'directory' },
      { path: './usr/bin/hello', content: `hello via ${compression}\n`, mode: 0o4755 },
      { path: './usr/bin/hi', type: 'symlink', linkname: 'hello' },
    ],
  });
}

async function rejection(promise: Promise<unknown>): Promise<CairnError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
  return err;
}

for (const compression of ['gz', 'xz', 'zst', 'none'] as const) {
  test(`reads control and data members compressed with ${compression}`, async () => {
    const path = await save(await sampleDeb(compression));
    const layout = await readDebLayout(path);
    assert.equal(layout.data.compression, compression);
    const { fields, files } = await readDebControl(path);
    assert.equal(fields.Package, 'hello');
    assert.equal(fields.Version, '1:2.10-3');
    assert.equal(fields.Description, 'greets\n second line');
    assert.equal(files.get('conffiles')?.toString(), '/etc/hello.conf\n');

    const seen: string[] = [];
    let body = '';
    await forEachDataEntry(path, async (header, data) => {
      seen.push(`${header.type} ${header.name} ${(header.mode & 0o7777).toString(8)}${header.linkname ? ` -> ${header.linkname}` : ''}`);
      if (header.name === './usr/bin/hello') for await (const chunk of data) body += chunk.toString();
    });
    assert.deepEqual(seen, ['directory ./usr/ 755', 'file ./usr/bin/hello 4755', 'symlink ./usr/bin/hi 644 -> hello']);
    assert.equal(body, `hello via ${compression}\n`);

    const found = await readDebFile(path, (p) => p.endsWith('/hello'));
    assert.deepEqual(found && { path: found.path, text: found.data.toString() }, { path: 'usr/bin/hello', text: `hello via ${compression}\n` });
    assert.equal(await readDebFile(path, (p) => p === 'nothing'), null);
  });
}

test('a large data member streams without being held whole', async () => {
  const big = Buffer.alloc(8 << 20, 7);
  const path = await save(await makeDeb({ control, compression: 'zst', files: [{ path: './usr/share/big', content: big }] }));
  let total = 0;
  let largestChunk = 0;
  await forEachDataEntry(path, async (_header, data) => {
    for await (const chunk of data) {
      total += chunk.length;
      largestChunk = Math.max(largestChunk, chunk.length);
    }
  });
  assert.equal(total, big.length);
  assert.ok(largestChunk < big.length, 'the body came in chunks');
});

test('rejects a file that is not an ar archive', async () => {
  const path = await save(Buffer.from('PK\x03\x04 this is a zip file, not a deb'));
  const err = await rejection(readDebControl(path));
  assert.equal(err.message, `${path}: not an ar archive (a .deb starts with "!<arch>")`);
});

test('rejects a truncated member header', async () => {
  const deb = await sampleDeb('gz');
  const path = await save(deb.subarray(0, 8 + 60 + 4 + 20));
  const err = await rejection(readDebControl(path));
  assert.equal(err.message, `${path}: truncated ar member header at byte 72`);
});

test('rejects a member that extends past the end of the file', async () => {
  const deb = await sampleDeb('xz');
  const path = await save(deb.subarray(0, deb.length - 50));
  const err = await rejection(forEachDataEntry(path, async () => undefined));
  assert.match(err.message, /ar member "data\.tar\.xz" declares [0-9]+ bytes but only [0-9]+ remain in the file \(truncated\?\)$/);
  assert.ok(err.message.startsWith(path));
});

test('rejects a member size that is not a number', async () => {
  const deb = Buffer.from(await sampleDeb('gz'));
  deb.write('12x4      ', 8 + 48, 'latin1');
  const err = await rejection(readDebControl(await save(deb)));
  assert.match(err.message, /ar member "debian-binary" at byte 8 has an invalid size "12x4"$/);
});

test('rejects a broken member header terminator', async () => {
  const deb = Buffer.from(await sampleDeb('gz'));
  deb.write('XX', 8 + 58, 'latin1');
  const err = await rejection(readDebControl(await save(deb)));
  assert.match(err.message, /bad ar member header at byte 8$/);
});

const tarOf = async (files: Parameters<typeof makeTar>[0]) => makeTar(files);

test('checks the order and names of members', async () => {
  const controlTar = compress(await tarOf([{ path: './control', content: 'Package: x\n' }]), 'gz');
  const dataTar = compress(await tarOf([]), 'gz');
  const version = { name: 'debian-binary', data: Buffer.from('2.0\n') };
  const cases: [string, { name: string; data: Buffer }[], RegExp][] = [
    [
      'debian-binary missing',
      [
        { name: 'control.tar.gz', data: controlTar },
        { name: 'data.tar.gz', data: dataTar },
      ],
      /the first ar member must be "debian-binary"$/,
    ],
    [
      'format 3.0',
      [
        { name: 'debian-binary', data: Buffer.from('3.0\n') },
        { name: 'control.tar.gz', data: controlTar },
      ],
      /unsupported package format "3\.0" \(expected 2\.x\)$/,
    ],
    [
      'data first',
      [version, { name: 'data.tar.gz', data: dataTar }, { name: 'control.tar.gz', data: controlTar }],
      /"data\.tar\.gz" comes before the control member$/,
    ],
    [
      'bzip2',
      [version, { name: 'control.tar.gz', data: controlTar }, { name: 'data.tar.bz2', data: dataTar }],
      /unexpected ar member "data\.tar\.bz2" \(only gzip, xz and zstd compression are supported\)$/,
    ],
    ['stray member', [version, { name: 'control.tar.gz', data: controlTar }, { name: 'evil', data: dataTar }], /unexpected ar member "evil"$/],
    ['no data', [version, { name: 'control.tar.gz', data: controlTar }], /no data\.tar member$/],
    [
      'two data',
      [version, { name: 'control.tar.gz', data: controlTar }, { name: 'data.tar.gz', data: dataTar }, { name: 'data.tar', data: dataTar }],
      /a second data member "data\.tar"$/,
    ],
  ];
  for (const [what, members, expected] of cases) {
    const err = await rejection(readDebLayout(await save(arArchive(members))));
    assert.match(err.message, expected, what);
  }
  // Members starting with "_" are reserved additions that dpkg skips.
  const layout = await readDebLayout(
    await save(
      arArchive([
        version,
        { name: '_gpgorigin', data: Buffer.from('sig') },
        { name: 'control.tar.gz', data: controlTar },
        { name: 'data.tar.gz', data: dataTar },
      ]),
    ),
  );
  assert.equal(layout.data.name, 'data.tar.gz');
});

test('rejects corrupt compressed data naming the member', async () => {
  const controlTar = compress(await tarOf([{ path: './control', content: 'Package: x\n' }]), 'xz');
  const garbage = Buffer.from('this is not xz data at all, just text');
  const path = await save(
    arArchive([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.xz', data: controlTar },
      { name: 'data.tar.xz', data: garbage },
    ]),
  );
  const err = await rejection(forEachDataEntry(path, async () => undefined));
  assert.ok(err.message.startsWith(`${path}: data.tar.xz: `), err.message);
  assert.match(err.message, /xz/);
});

test('rejects a data member that is not a tar archive', async () => {
  const controlTar = compress(await tarOf([{ path: './control', content: 'Package: x\n' }]), 'gz');
  const path = await save(
    arArchive([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.gz', data: controlTar },
      { name: 'data.tar.gz', data: compress(Buffer.alloc(1024, 0x41), 'gz') },
    ]),
  );
  const err = await rejection(forEachDataEntry(path, async () => undefined));
  assert.match(err.message, /^.*: data\.tar\.gz: not a valid tar archive: /);
});

test('rejects a control member without a control file or with two paragraphs', async () => {
  const noControl = await save(
    arArchive([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.gz', data: compress(await tarOf([{ path: './md5sums', content: '' }]), 'gz') },
      { name: 'data.tar.gz', data: compress(await tarOf([]), 'gz') },
    ]),
  );
  assert.match((await rejection(readDebControl(noControl))).message, /control\.tar\.gz has no "control" file$/);
  const twoParagraphs = await save(
    arArchive([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.gz', data: compress(await tarOf([{ path: './control', content: 'Package: a\n\nPackage: b\n' }]), 'gz') },
      { name: 'data.tar.gz', data: compress(await tarOf([]), 'gz') },
    ]),
  );
  assert.match((await rejection(readDebControl(twoParagraphs))).message, /exactly one paragraph, found 2$/);
});

test('a handler error passes through unchanged and stops reading', async () => {
  const path = await save(await sampleDeb('xz'));
  let calls = 0;
  const err = await rejection(
    forEachDataEntry(path, async () => {
      calls++;
      throw new CairnError('refused by the handler');
    }),
  );
  assert.equal(err.message, 'refused by the handler');
  assert.equal(calls, 1);
});

test('entryPath normalises archive paths and refuses escaping ones', () => {
  assert.equal(entryPath('./usr/bin/x'), 'usr/bin/x');
  assert.equal(entryPath('./'), '');
  assert.equal(entryPath('usr//lib/./x/'), 'usr/lib/x');
  assert.throws(() => entryPath('./../../etc/passwd'), /"\.\." component/);
  assert.throws(() => entryPath('usr/lib/../../x'), /"\.\." component/);
  assert.throws(() => entryPath('/etc/passwd'), /absolute/);
  assert.throws(() => entryPath('usr/a\0b'), /NUL/);
});
