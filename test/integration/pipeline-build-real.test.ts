// The tiny recipe against the real Debian archive: signed InRelease, real packages and kernel,
// a second build that downloads nothing, and a byte-identical rootfs.tar.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/tiny.yaml', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'cairn-real-'));
after(() => rm(work, { recursive: true, force: true }));

async function build(out: string) {
  // The recipe is copied so its lock is written here, not beside the shipped recipe.
  const { stdout } = await run(process.execPath, [cli, 'build', join(work, 'tiny.yaml'), '--out', out, '--json'], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout);
}

test(
  'tiny builds from the real archive twice: the second downloads nothing and gives the same tar',
  { skip: process.getuid?.() !== 0 && 'needs root', timeout: 600_000 },
  async () => {
    await copyFile(recipe, join(work, 'tiny.yaml'));
    const first = await build(join(work, 'a'));
    assert.equal(first.lockfile.status, 'created');
    assert.ok(first.packages >= 10, `tiny has its kernel and busybox (${first.packages} packages)`);
    const lock = JSON.parse(await readFile(join(work, 'tiny.lock'), 'utf8'));
    assert.ok(lock.packages.some((p: { name: string }) => p.name === 'busybox-static'));
    assert.ok(lock.packages.some((p: { name: string }) => /^linux-image-6\..*-cloud-amd64$/.test(p.name)));
    assert.match(lock.origin.inReleaseSha256, /^[0-9a-f]{64}$/);

    const second = await build(join(work, 'b'));
    assert.equal(second.lockfile.status, 'unchanged');
    assert.equal(second.downloadedFiles, 0);
    assert.equal(second.tarSha256, first.tarSha256);
    const osRelease = await readFile(join(work, 'b/tiny/0.1.0/rootfs/usr/lib/os-release'), 'utf8');
    assert.match(osRelease, /^IMAGE_VERSION="?0\.1\.0"?$/m);
    // depmod's indexes: modprobe in the booted image finds vfat (the ESP) and overlay (containers).
    const modules = join(work, 'b/tiny/0.1.0/rootfs/usr/lib/modules');
    const [kernel] = await readdir(modules);
    const dep = await readFile(join(modules, kernel!, 'modules.dep'), 'utf8');
    assert.match(dep, /^kernel\/fs\/fat\/vfat\.ko(\.xz)?: kernel\/fs\/fat\/fat\.ko(\.xz)?$/m);
    assert.match(dep, /^kernel\/fs\/overlayfs\/overlay\.ko(\.xz)?:/m);
    assert.ok((await stat(join(modules, kernel!, 'modules.dep.bin'))).size > 0);
  },
);
