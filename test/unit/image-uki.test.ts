// The PE editing behind the UKI, on a small synthetic PE32+ image read back by binutils' objdump.
// Booting a real UKI is test/integration/image-initramfs-uki.test.ts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { addPeSections, buildUki } from '../../src/image/uki.js';
import { OPT, stubPe } from '../fixtures/pe-stub.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-pe-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const sections = [
  { name: '.osrel', data: Buffer.from('ID=cairn\n') },
  { name: '.cmdline', data: Buffer.from('console=ttyS0 usrhash=ab') },
  { name: '.initrd', data: Buffer.alloc(0x1234, 7) },
  { name: '.linux', data: Buffer.alloc(0x2001, 9) },
];

test('added sections follow the stub at aligned offsets and addresses, as objdump reads them', async () => {
  const stub = stubPe();
  const uki = addPeSections(stub, sections);
  assert.deepEqual(uki.subarray(0x400, 0x410), stub.subarray(0x400, 0x410), "the stub's code is untouched");
  const file = join(work, 'uki.efi');
  await writeFile(file, uki);
  const dump = execFileSync('objdump', ['-h', file]).toString();
  const rows = [...dump.matchAll(/^\s*\d+ (\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)/gm)].map((m) => ({
    name: m[1],
    size: parseInt(m[2]!, 16),
    vma: parseInt(m[3]!, 16) - 0x140000000,
    offset: parseInt(m[4]!, 16),
  }));
  assert.deepEqual(rows, [
    { name: '.text', size: 0x10, vma: 0x1000, offset: 0x400 },
    { name: '.osrel', size: 9, vma: 0x2000, offset: 0x600 },
    { name: '.cmdline', size: 24, vma: 0x3000, offset: 0x800 },
    { name: '.initrd', size: 0x1234, vma: 0x4000, offset: 0xa00 },
    { name: '.linux', size: 0x2001, vma: 0x6000, offset: 0x1e00 },
  ]);
  assert.match(dump, /\.linux[^\n]*\n[^\n]*CODE/, '.linux is marked as code, like ukify does');
  for (const s of sections) {
    const row = rows.find((r) => r.name === s.name)!;
    assert.deepEqual(uki.subarray(row.offset, row.offset + s.data.length), s.data, `${s.name} contents`);
  }
  assert.equal(uki.length, 0x1e00 + 0x2200);
  assert.equal(uki.readUInt32LE(OPT + 56), 0x9000, 'SizeOfImage ends at the last section, aligned');
  assert.equal(uki.readUInt32LE(OPT + 64), 0, 'no stale checksum');
  const headers = execFileSync('objdump', ['-p', file]).toString();
  assert.match(headers, /SizeOfImage\s+0*9000/);
  assert.deepEqual(addPeSections(stub, sections), uki, 'the same inputs give the same bytes');
});

test('stubs cairn cannot extend safely are refused', () => {
  const refuse = (stub: Buffer, pattern: RegExp) =>
    assert.throws(
      () => addPeSections(stub, sections, 'stub.efi'),
      (err: unknown) => err instanceof CairnError && pattern.test(err.message),
    );
  refuse(Buffer.from('#!/bin/sh\n'.padEnd(0x100, ' ')), /stub\.efi is not a usable systemd-stub: no DOS header/);
  const noPe = stubPe();
  noPe.writeUInt32LE(0x10000, 0x3c);
  refuse(noPe, /no PE signature/);
  const pe32 = stubPe();
  pe32.writeUInt16LE(0x10b, OPT);
  refuse(pe32, /not a PE32\+/);
  const signed = stubPe();
  signed.writeUInt32LE(0x600, OPT + 112 + 4 * 8);
  signed.writeUInt32LE(0x100, OPT + 112 + 4 * 8 + 4);
  refuse(signed, /it is signed/);
  refuse(stubPe(0x200), /no room for 4 more sections/);
  const oddAlignment = stubPe();
  oddAlignment.writeUInt32LE(0x300, OPT + 36);
  refuse(oddAlignment, /alignments or header size are out of range/);
  assert.throws(() => addPeSections(addPeSections(stubPe(), [sections[0]!]), [sections[0]!]), /already has a \.osrel section/);
  assert.throws(() => addPeSections(stubPe(), [{ name: '.waytoolongname', data: Buffer.alloc(1) }]), /not a short section name/);
});

test('a tree without systemd-stub is an error that says which package brings it', async () => {
  const absent = join(work, 'no-such-stub.efi');
  await assert.rejects(
    buildUki({ stub: absent, kernel: absent, initrd: absent, cmdline: '', osRelease: '', uname: '1', output: join(work, 'never.efi') }),
    (err: unknown) => err instanceof CairnError && err.message.includes(`systemd-stub ${absent}`) && /systemd-boot-efi/.test(err.hint ?? ''),
  );
  assert.equal(existsSync(join(work, 'never.efi')), false, 'no output is left behind');
});
