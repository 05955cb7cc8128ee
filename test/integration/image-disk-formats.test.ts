// disk.raw converted for other platforms with qemu-img: every format holds the same disk
// (qemu-img compare), passes qemu-img check where the format has one, and comes out
// bit-identical from two conversions of the same image at different times.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { convertDisk } from '../../src/image/disk-formats.js';
import { prngBytes } from '../fixtures/seeded-bytes.js';

const run = promisify(execFile);
const work = await mkdtemp(join(tmpdir(), 'cairn-formats-'));
after(() => rm(work, { recursive: true, force: true }));
const EPOCH = 1_730_000_000;
const sha = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

for (const format of ['qcow2', 'vmdk', 'vhd'] as const) {
  test(`${format}: the same disk, checked by qemu-img, bit-identical when made again`, async () => {
    const raw = join(work, `${format}.raw`);
    // Some data, then a hole: what a disk image with free space looks like.
    await writeFile(raw, Buffer.concat([prngBytes(3 << 20, format.length), Buffer.alloc(5 << 20)]));
    const [a, b] = [join(work, `${format}-a`), join(work, `${format}-b`)];
    await mkdir(a);
    await mkdir(b);
    const first = await convertDisk(raw, format, a, EPOCH);
    await sleep(1100);
    const second = await convertDisk(raw, format, b, EPOCH);
    assert.equal(await sha(first), await sha(second));
    const qemuFormat = format === 'vhd' ? 'vpc' : format;
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', qemuFormat, first])).stdout);
    assert.ok(info['virtual-size'] >= 8 << 20, `virtual size ${info['virtual-size']}`);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', qemuFormat, raw, first]);
    if (format !== 'vhd') await run('qemu-img', ['check', '-f', qemuFormat, first]);
  });
}

test('a VHD footer carries the build time and a checksum qemu-img accepts', async () => {
  const raw = join(work, 'footer.raw');
  await writeFile(raw, Buffer.alloc(2 << 20, 1));
  const dir = join(work, 'footer');
  await mkdir(dir);
  const vhd = await readFile(await convertDisk(raw, 'vhd', dir, EPOCH));
  const footer = vhd.subarray(vhd.length - 512);
  assert.equal(footer.toString('latin1', 0, 8), 'conectix');
  assert.equal(footer.readUInt32BE(24), EPOCH - 946_684_800);
  let sum = 0;
  footer.forEach((byte, i) => {
    if (i < 64 || i > 67) sum += byte;
  });
  assert.equal(footer.readUInt32BE(64), ~sum >>> 0);
});
