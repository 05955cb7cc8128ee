// cairn's newc writer checked against GNU cpio: what cpio lists and extracts from cairn's archive is
// what went in (types, modes, owners, times, contents, link targets), and the bytes depend only on
// the entries, not on their order.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type CpioEntry, cpioArchive } from '../../src/image/cpio.js';
import { CairnError } from '../../src/errors.js';

const MTIME = 1_700_000_000;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-cpio-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

// Sizes 0..5 and a 4099-byte file cover every padding remainder of data and of names.
const entries: CpioEntry[] = [
  { type: 'file', path: 'init', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
  { type: 'dir', path: 'etc', mode: 0o750 },
  { type: 'file', path: 'etc/cairn/modules', data: Buffer.from('a.ko\nb.ko\n') },
  ...[0, 1, 2, 3, 4, 5].map((n): CpioEntry => ({ type: 'file', path: `lib/${'n'.repeat(n + 1)}`, data: Buffer.alloc(n, 0x41 + n), mode: 0o600 })),
  { type: 'file', path: 'lib/big.bin', data: Buffer.from(Array.from({ length: 4099 }, (_, i) => (i * 31) & 0xff)) },
  { type: 'symlink', path: 'bin', target: 'usr/bin' },
  { type: 'symlink', path: 'lib/abs-link', target: '/lib/modules/x.ko' },
  { type: 'file', path: 'setuid', data: Buffer.from('x'), mode: 0o4755 },
];

function extract(archive: Buffer): string {
  const dir = join(work, `x-${Math.random().toString(36).slice(2)}`);
  execFileSync('mkdir', ['-p', dir]);
  execFileSync('cpio', ['-i', '-d', '--quiet', '--no-absolute-filenames', '--preserve-modification-time'], { cwd: dir, input: archive });
  return dir;
}

test('GNU cpio extracts the archive to the same files, modes, times and links', () => {
  const dir = extract(cpioArchive(entries, { mtime: MTIME }));
  for (const e of entries) {
    const path = join(dir, e.path);
    const st = lstatSync(path);
    if (e.type === 'file') {
      assert.ok(st.isFile(), `${e.path} is a file`);
      assert.deepEqual(readFileSync(path), Buffer.from(e.data), `${e.path} content`);
      assert.equal(st.mode & 0o7777, e.mode ?? 0o644, `${e.path} mode`);
      assert.equal(Math.floor(st.mtimeMs / 1000), MTIME, `${e.path} mtime`);
    } else if (e.type === 'symlink') {
      assert.ok(st.isSymbolicLink(), `${e.path} is a symlink`);
      assert.equal(readlinkSync(path), e.target);
    } else if (e.type === 'dir') {
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o7777, e.mode ?? 0o755);
    }
  }
  // Parents nobody listed are made as plain 0755 directories.
  assert.ok(lstatSync(join(dir, 'etc/cairn')).isDirectory());
  assert.equal(lstatSync(join(dir, 'lib')).mode & 0o7777, 0o755);
});

test('cpio -t -v lists every entry, parents first, owned by root with the fixed time', () => {
  const archive = cpioArchive([...entries, { type: 'chardev', path: 'dev/console', major: 5, minor: 1 }], { mtime: MTIME });
  const listing = execFileSync('cpio', ['-t', '-v', '--quiet', '--numeric-uid-gid'], {
    input: archive,
    env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' },
  }).toString();
  const lines = listing.trim().split('\n');
  const names = lines.map((l) => l.replace(/^.* 2023 /, '').replace(/ -> .*$/, ''));
  assert.deepEqual(names, [
    'bin',
    'dev',
    'dev/console',
    'etc',
    'etc/cairn',
    'etc/cairn/modules',
    'init',
    'lib',
    'lib/abs-link',
    'lib/big.bin',
    'lib/n',
    'lib/nn',
    'lib/nnn',
    'lib/nnnn',
    'lib/nnnnn',
    'lib/nnnnnn',
    'setuid',
  ]);
  for (const l of lines) {
    const f = l.split(/\s+/);
    assert.equal(f[2], '0', `owner of ${l}`);
    assert.equal(f[3], '0', `group of ${l}`);
    assert.match(l, /Nov 14\s+2023/, `date of ${l}`);
  }
  assert.match(
    lines.find((l) => l.endsWith('dev/console'))!,
    /^crw------- +1 0 +0 +5, +1 /,
  );
  assert.match(
    lines.find((l) => l.endsWith('setuid'))!,
    /^-rwsr-xr-x /,
  );
  assert.match(
    lines.find((l) => l.includes('lib/abs-link'))!,
    /^lrwxrwxrwx .* -> \/lib\/modules\/x\.ko$/,
  );
});

test('the bytes depend only on the entries: same output for any input order', () => {
  const a = cpioArchive(entries, { mtime: MTIME });
  const b = cpioArchive([...entries].reverse(), { mtime: MTIME });
  assert.deepEqual(a, b);
  assert.notDeepEqual(cpioArchive(entries, { mtime: MTIME + 1 }), a);
  // Every record starts 4-byte aligned: walk the headers the way the kernel does.
  let offset = 0;
  const inodes: number[] = [];
  for (;;) {
    assert.equal(a.toString('ascii', offset, offset + 6), '070701', `magic at ${offset}`);
    const field = (i: number) => parseInt(a.toString('ascii', offset + 6 + i * 8, offset + 14 + i * 8), 16);
    const [ino, size, nameSize] = [field(0), field(6), field(11)];
    const name = a.toString('utf8', offset + 110, offset + 110 + nameSize - 1);
    offset = Math.ceil((offset + 110 + nameSize) / 4) * 4;
    offset = Math.ceil((offset + size) / 4) * 4;
    if (name === 'TRAILER!!!') break;
    inodes.push(ino);
  }
  assert.equal(offset, a.length);
  assert.deepEqual(
    inodes,
    inodes.map((_, i) => i + 1),
    'inodes are numbered in archive order',
  );
});

test('unsafe or inconsistent entries are refused', () => {
  const refuse = (list: CpioEntry[], pattern: RegExp) =>
    assert.throws(
      () => cpioArchive(list, { mtime: MTIME }),
      (err: unknown) => err instanceof CairnError && pattern.test(err.message),
    );
  const f = (path: string): CpioEntry => ({ type: 'file', path, data: Buffer.alloc(1) });
  refuse([f('../escape')], /not a clean relative path/);
  refuse([f('/etc/passwd')], /not a clean relative path/);
  refuse([f('a//b')], /not a clean relative path/);
  refuse([f('a/./b')], /not a clean relative path/);
  refuse([f('TRAILER!!!')], /reserved/);
  refuse([f('x'), f('x')], /given twice/);
  refuse([f('x'), f('x/y')], /x, which is a file, not a directory/);
  refuse([{ type: 'file', path: 'm', data: Buffer.alloc(0), mode: 0o10000 }], /not a permission mode/);
  refuse([{ type: 'symlink', path: 'l', target: '' }], /empty or NUL/);
  assert.throws(() => cpioArchive([], { mtime: -1 }), /does not fit/);
});
