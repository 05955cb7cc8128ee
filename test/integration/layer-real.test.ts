// A layer over the tiny recipe's image, from the real Debian archive: zstd and what it needs
// that tiny lacks (tiny has libc6, libzstd1, liblzma5 and zlib1g already), verified by
// veritysetup, mounted over tiny's /usr and run from there; a flipped byte is refused.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mountLayers } from '../../src/runtime/layers.js';
import { RuntimeSandbox } from '../fixtures/runtime.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/tiny.yaml', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'cairn-layer-real-'));
after(() => rm(work, { recursive: true, force: true }));

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the CLI's JSON, asserted field by field
async function cairn(...args: string[]): Promise<any> {
  const { stdout } = await run(process.execPath, [cli, ...args, '--json'], { cwd: work, maxBuffer: 1 << 24 });
  return JSON.parse(stdout);
}

test(
  "a zstd layer over tiny holds only what tiny lacks, verifies, mounts and runs over tiny's /usr",
  { skip: process.getuid?.() !== 0 && 'needs root', timeout: 600_000 },
  async () => {
    await copyFile(recipe, join(work, 'tiny.yaml'));
    await copyFile(recipe.replace(/\.yaml$/, '.lock'), join(work, 'tiny.lock'));
    await cairn('build', 'tiny.yaml', '--stage', 'rootfs', '--out', 'images');
    await writeFile(join(work, 'zstd.yaml'), 'name: zstd\nversion: "1"\nbase: tiny.yaml\npackages: [zstd, libc6]\n');
    const layer = await cairn('layer', 'build', 'zstd.yaml', '--out', 'layer');

    const base = JSON.parse(await readFile(join(work, 'tiny.lock'), 'utf8')) as { packages: { name: string }[] };
    const inBase = new Set(base.packages.map((p) => p.name));
    const added = layer.packages.map((p: { name: string }) => p.name) as string[];
    assert.ok(added.includes('zstd'), `zstd is in the layer (${added.join(', ')})`);
    assert.deepEqual(
      added.filter((name) => inBase.has(name)),
      [],
      'nothing the base has',
    );
    for (const name of ['libc6', 'libzstd1', 'liblzma5', 'zlib1g']) assert.ok(inBase.has(name) && !added.includes(name), `${name} comes from the base`);
    assert.ok(layer.notes.some((note: string) => /^libc6 .* is already in the base image$/.test(note)));

    const image = join(work, 'layer', layer.image.file);
    const verity = join(work, 'layer', layer.verity.file);
    await run('veritysetup', ['verify', image, verity, layer.verity.rootHash]);

    const usr = join(work, 'images/tiny/0.1.0/rootfs/usr');
    const mounted = await mountLayers([join(work, 'layer')], usr);
    try {
      // The container's view: the layer overlaid on the base /usr, the merged-/usr links beside it.
      const root = join(work, 'container');
      await mkdir(join(root, 'usr'), { recursive: true });
      for (const dir of ['bin', 'lib', 'lib64']) await symlink(`usr/${dir}`, join(root, dir));
      const script = `mount -t overlay overlay -o lowerdir=${mounted.dirs[0]}:${usr} ${root}/usr && chroot ${root} /usr/bin/zstd --version`;
      const version = execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8' });
      assert.match(version, /Zstandard CLI/);
    } finally {
      await mounted.release();
    }

    // The same through cairn run: the layer verified, mounted and overlaid on the shared /usr.
    const sandbox = await RuntimeSandbox.create('cairn-layer-run-');
    try {
      const ran = sandbox.cairn('run', '--usr', usr, '--layer', join(work, 'layer'), '--', '/usr/bin/zstd', '--version');
      assert.equal(ran.code, 0, ran.stderr);
      assert.match(ran.stdout, /Zstandard CLI/);
      const without = sandbox.cairn('run', '--usr', usr, '--', '/usr/bin/zstd', '--version');
      assert.equal(without.code, 127, 'without the layer the base has no zstd');
    } finally {
      await sandbox.destroy();
    }

    const tampered = join(work, 'tampered');
    await cp(join(work, 'layer'), tampered, { recursive: true });
    const bytes = await readFile(join(tampered, layer.image.file));
    bytes[bytes.length - 4096 + 100]! ^= 0x01;
    await writeFile(join(tampered, layer.image.file), bytes);
    await assert.rejects(
      mountLayers([tampered], usr),
      /layer zstd 1 .* is refused: it does not match its root hash [0-9a-f]{64}: .*data block \d+ does not match the hash tree/,
    );
  },
);
