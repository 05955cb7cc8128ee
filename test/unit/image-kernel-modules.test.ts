// Module closure over a synthetic kernel tree: real ELF objects with .modinfo sections, compressed
// the ways Debian ships them, and a modules.builtin. The real trixie kernel is covered by
// test/integration/image-initramfs-uki.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CairnError } from '../../src/errors.js';
import { moduleClosure, readModinfo } from '../../src/image/kernel-modules.js';

const KVER = '9.9.9-test';

/** A minimal ELF64 little-endian relocatable object: null section, .modinfo, .shstrtab. */
function elf(modinfo: string[]): Buffer {
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0', 'latin1');
  const info = Buffer.from(modinfo.map((f) => `${f}\0`).join(''), 'utf8');
  const infoOff = 64;
  const strOff = infoOff + info.length;
  const shoff = Math.ceil((strOff + shstrtab.length) / 8) * 8;
  const out = Buffer.alloc(shoff + 3 * 64);
  out.writeUInt32BE(0x7f454c46, 0);
  out[4] = 2; // ELFCLASS64
  out[5] = 1; // little-endian
  out[6] = 1;
  out.writeUInt16LE(1, 16); // ET_REL
  out.writeUInt16LE(62, 18); // x86-64
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x34);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(3, 0x3c);
  out.writeUInt16LE(2, 0x3e);
  info.copy(out, infoOff);
  shstrtab.copy(out, strOff);
  const section = (i: number, name: number, type: number, offset: number, size: number) => {
    const h = shoff + i * 64;
    out.writeUInt32LE(name, h);
    out.writeUInt32LE(type, h + 4);
    out.writeBigUInt64LE(BigInt(offset), h + 0x18);
    out.writeBigUInt64LE(BigInt(size), h + 0x20);
  };
  section(1, 1, 1, infoOff, info.length); // ".modinfo", PROGBITS
  section(2, 10, 3, strOff, shstrtab.length); // ".shstrtab", STRTAB
  return out;
}

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-kmod-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface FakeModule {
  path: string;
  info: string[];
  compress?: 'xz' | 'zst' | 'gz';
}

async function kernelTree(modules: FakeModule[], builtin: string[] = []): Promise<{ root: string; objects: Map<string, Buffer> }> {
  const root = await mkdtemp(join(work, 'root-'));
  const dir = join(root, 'usr/lib/modules', KVER);
  const objects = new Map<string, Buffer>();
  for (const m of modules) {
    const obj = elf(m.info);
    objects.set(m.path, obj);
    const data =
      m.compress === 'xz'
        ? execFileSync('xz', ['-c', '--check=crc32'], { input: obj })
        : m.compress === 'zst'
          ? execFileSync('zstd', ['-q', '-c'], { input: obj })
          : m.compress === 'gz'
            ? gzipSync(obj)
            : obj;
    const file = join(dir, m.path + (m.compress ? `.${m.compress}` : ''));
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, data);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'modules.builtin'), builtin.map((b) => `${b}\n`).join(''));
  return { root, objects };
}

const standard: FakeModule[] = [
  { path: 'kernel/drivers/md/dm-verity.ko', info: ['license=GPL', 'depends=dm-mod,dm-bufio,reed_solomon', 'name=dm_verity'], compress: 'xz' },
  { path: 'kernel/drivers/md/dm-mod.ko', info: ['depends=', 'name=dm_mod'], compress: 'zst' },
  { path: 'kernel/drivers/md/dm-bufio.ko', info: ['depends=dm-mod', 'name=dm_bufio'], compress: 'gz' },
  { path: 'kernel/lib/reed_solomon/reed_solomon.ko', info: ['depends=', 'name=reed_solomon'] },
  { path: 'kernel/fs/erofs/erofs.ko', info: ['depends=libcrc32c', 'softdep=pre: crypto-nothing lz4helper post: later', 'name=erofs'], compress: 'xz' },
  { path: 'kernel/lib/libcrc32c.ko', info: ['depends=crc32c_generic', 'name=libcrc32c'], compress: 'xz' },
  { path: 'kernel/lib/lz4helper.ko', info: ['depends=', 'name=lz4helper'], compress: 'xz' },
  { path: 'kernel/lib/later.ko', info: ['depends=', 'name=later'], compress: 'xz' },
];

test('dependencies come first, built-ins are skipped, and every module is decompressed', async () => {
  const { root, objects } = await kernelTree(standard, ['kernel/crypto/crc32c_generic.ko', 'kernel/fs/ext4/ext4.ko']);
  const mods = await moduleClosure(root, KVER, ['dm-verity', 'ext4', 'erofs', 'dm_mod']);
  assert.deepEqual(
    mods.map((m) => m.name),
    ['dm_mod', 'dm_bufio', 'reed_solomon', 'dm_verity', 'lz4helper', 'libcrc32c', 'erofs'],
  );
  assert.deepEqual(
    mods.map((m) => m.fileName),
    ['dm-mod.ko', 'dm-bufio.ko', 'reed_solomon.ko', 'dm-verity.ko', 'lz4helper.ko', 'libcrc32c.ko', 'erofs.ko'],
  );
  assert.equal(mods[0]!.source, `usr/lib/modules/${KVER}/kernel/drivers/md/dm-mod.ko.zst`);
  for (const m of mods) {
    const original = [...objects].find(([p]) => p.endsWith(`/${m.fileName}`))![1];
    assert.deepEqual(m.data, original, `${m.name} is the decompressed object`);
  }
});

test('a module the kernel does not have is an error naming who needs it', async () => {
  const { root } = await kernelTree([{ path: 'kernel/fs/erofs/erofs.ko', info: ['depends=libcrc32c', 'name=erofs'], compress: 'xz' }]);
  await assert.rejects(
    moduleClosure(root, KVER, ['erofs']),
    (err: unknown) =>
      err instanceof CairnError && /kernel 9\.9\.9-test has no module libcrc32c \(needed by erofs\)/.test(err.message) && /neither built in/.test(err.message),
  );
  await assert.rejects(moduleClosure(root, KVER, ['virtio_blk']), /has no module virtio_blk: it is neither built in/);
  await assert.rejects(
    moduleClosure(root, '1.0-absent', ['erofs']),
    (err: unknown) => err instanceof CairnError && /no modules for kernel 1\.0-absent/.test(err.message),
  );
});

test('circular dependencies, misnamed and corrupt modules are refused', async () => {
  const cycle = await kernelTree([
    { path: 'kernel/a.ko', info: ['depends=b', 'name=a'] },
    { path: 'kernel/b.ko', info: ['depends=a', 'name=b'] },
  ]);
  await assert.rejects(moduleClosure(cycle.root, KVER, ['a']), /circle: a → b → a/);
  const misnamed = await kernelTree([{ path: 'kernel/a.ko', info: ['depends=', 'name=evil'] }]);
  await assert.rejects(moduleClosure(misnamed.root, KVER, ['a']), /calls itself evil/);
  const corrupt = await kernelTree([]);
  const dir = join(corrupt.root, 'usr/lib/modules', KVER, 'kernel');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'junk.ko'), Buffer.from('not an elf file at all, just some bytes to be long enough for a header..'));
  await assert.rejects(moduleClosure(corrupt.root, KVER, ['junk']), /junk\.ko is not a usable kernel module: no ELF header/);
  await writeFile(join(dir, 'trunc.ko.xz'), execFileSync('xz', ['-c'], { input: Buffer.alloc(100) }).subarray(0, 30));
  await assert.rejects(moduleClosure(corrupt.root, KVER, ['trunc']), /xz could not decompress/);
});

test('readModinfo checks every offset against the file', () => {
  const good = elf(['name=x', 'depends=a,b', 'alias=p', 'alias=q']);
  const info = readModinfo(good, 'x.ko');
  assert.deepEqual(info.get('alias'), ['p', 'q']);
  assert.deepEqual(info.get('depends'), ['a,b']);
  const badShoff = Buffer.from(good);
  badShoff.writeBigUInt64LE(BigInt(good.length), 0x28);
  assert.throws(() => readModinfo(badShoff, 'x.ko'), /section headers lie outside the file/);
  const badSection = Buffer.from(good);
  badSection.writeBigUInt64LE(1n << 40n, Number(good.readBigUInt64LE(0x28)) + 64 + 0x20);
  assert.throws(() => readModinfo(badSection, 'x.ko'), /section 1 lies outside the file/);
  const elf32 = Buffer.from(good);
  elf32[4] = 1;
  assert.throws(() => readModinfo(elf32, 'x.ko'), /not a 64-bit little-endian/);
  const unnamed = Buffer.from(good);
  unnamed.writeUInt32LE(10, Number(good.readBigUInt64LE(0x28)) + 64); // .modinfo's header now names .shstrtab
  assert.throws(() => readModinfo(unnamed, 'x.ko'), /no \.modinfo section/);
});
