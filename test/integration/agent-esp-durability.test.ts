// Boot entries on a real vfat ESP (a FAT image on a loop device, mounted by Linux): after the
// agent installs and blesses an entry, the image itself, read with mtools while it is still
// mounted (what a power cut would leave), holds the entry under its new name with its full size
// and content. vfat writes a renamed file's size into the new directory entry only on inode
// writeback, so without a sync after the rename the image shows the name with 0 bytes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { blessEntry, installUki } from '../../src/agent/boot-entries.js';
import { kernelHas, needs } from '../fixtures/requirements.js';

// The development machine's kernel has no vfat (the QEMU update test covers the ESP there).
const skip = needs({ root: 'loop devices, mount' }).skip || (!kernelHas({ filesystem: 'vfat' }) && 'the host kernel has no vfat');

test('an installed and a blessed entry are whole on the FAT image before it is unmounted', { skip }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'cairn-esp-durable-'));
  const image = join(work, 'esp.img');
  const mnt = join(work, 'mnt');
  let loop: string | null = null;
  let mounted = false;
  try {
    await writeFile(image, '');
    await truncate(image, 64 * 1024 * 1024);
    execFileSync('mkfs.vfat', ['-n', 'ESP', image], { stdio: 'ignore' });
    await mkdir(mnt);
    loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    execFileSync('mount', ['-t', 'vfat', loop, mnt]);
    mounted = true;
    const uki = join(work, 'demo.efi');
    const content = createHash('sha256').update('uki').digest().toString('hex').repeat(40_000);
    await writeFile(uki, content);
    const entry = await installUki(mnt, uki, { name: 'demo', version: '1.0.0' });
    const blessed = await blessEntry(entry);
    const onImage = (path: string) =>
      execFileSync('mtype', ['-i', image, `::/${path}`], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, maxBuffer: 1 << 24 });
    const listing = execFileSync('mdir', ['-i', image, '-b', '::/EFI/Linux'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    assert.match(listing, /demo_1\.0\.0\.efi/, `the blessed name is on the image: ${listing}`);
    assert.doesNotMatch(listing, /\+3/, 'the counted name is gone');
    assert.equal(blessed.file, 'demo_1.0.0.efi');
    assert.equal(onImage('EFI/Linux/demo_1.0.0.efi').toString(), content, 'the blessed entry has its whole content on the image');
    assert.equal((await readFile(blessed.path)).length, content.length);
  } finally {
    if (mounted) execFileSync('umount', [mnt]);
    if (loop) execFileSync('losetup', ['--detach', loop]);
    await rm(work, { recursive: true, force: true });
  }
});
