// Reconstruction: two builds of recipes/tiny.yaml that differ by a recipe change (version bump and
// a changed file) are published; a host on the first rebuilds the second from its own images and
// only the chunks the delta plan names, copied out of the repository, byte-identical to the
// published images. Without one of those chunks the rebuild fails and leaves nothing behind.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { sha256File } from '../../src/hash-file.js';
import { reassemble } from '../../src/release/chunk-index.js';
import { ChunkStore } from '../../src/release/chunk-store.js';
import { DeltaSource, indexLocal } from '../../src/release/delta-plan.js';
import { readManifest } from '../../src/pipeline/manifest.js';
import { imageFile, RELEASE_IMAGES } from '../../src/release/release-record.js';
import { patchPath } from '../../src/release/repository-layout.js';
import { reconstructRelease, releaseIndexes, type Reconstruction } from '../fixtures/delta-reconstruct.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const shipped = fileURLToPath(new URL('../../../recipes/tiny.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root (the build makes a root file system)';

async function cairn(...args: string[]): Promise<string> {
  return (await run(process.execPath, [cli, ...args], { maxBuffer: 1 << 24 })).stdout;
}

let work: string;
let repo: string;
let builds: string[];
let releaseDir: string;
let publicKey: string;
let rebuilt: Reconstruction;

before(
  async () => {
    if (skip) return;
    work = await mkdtemp(join(tmpdir(), 'cairn-delta-'));
    repo = join(work, 'repo');
    await cairn('keys', 'generate', '--out', join(work, 'keys'));
    publicKey = join(work, 'keys/release.pub.asc');
    // Release 2 is the same recipe with its version bumped and its init script changed.
    const doc = parseDocument(await readFile(shipped, 'utf8'));
    const versions = [String(doc.get('version')), `${String(doc.get('version'))}.1`];
    const init = String(doc.getIn(['files', 0, 'content']));
    builds = [];
    for (const [i, version] of versions.entries()) {
      const dir = join(work, `recipe-${i + 1}`);
      await mkdir(dir);
      doc.set('version', version);
      const content = i === 0 ? init : init.replace(/^echo .*$/m, `echo "cairn-tiny ${version}: up"`);
      if (i > 0) assert.notEqual(content, init, 'the init script changed');
      doc.setIn(['files', 0, 'content'], content);
      await writeFile(join(dir, 'tiny.yaml'), doc.toString());
      // Both releases use the packages the first resolved: the second differs by the recipe alone.
      if (i > 0) await copyFile(join(work, 'recipe-1/tiny.lock'), join(dir, 'tiny.lock'));
      await cairn('build', join(dir, 'tiny.yaml'), ...(i > 0 ? ['--frozen'] : []), '--out', join(work, 'images'), '--json');
      builds.push(join(work, 'images/tiny', version));
      await cairn('publish', builds[i]!, '--repo', repo, '--sign-key', join(work, 'keys/release.asc'), '--json');
    }
    releaseDir = join(repo, 'tiny/releases', versions[1]!);
    const { manifest } = await readManifest(builds[0]!);
    rebuilt = await reconstructRelease({
      repoDir: repo,
      releaseDir,
      publicKey,
      oldFiles: RELEASE_IMAGES.map((key) => join(builds[0]!, imageFile(key, manifest.name, manifest.version))),
      outDir: join(work, 'host'),
    });
  },
  { timeout: 600_000 },
);

after(() => (work ? rm(work, { recursive: true, force: true }) : undefined));

test('the new images rebuilt from the old ones and the downloaded chunks are the published images', { skip }, async () => {
  const { manifest } = await readManifest(builds[1]!);
  assert.deepEqual(
    rebuilt.images.map((r) => r.image),
    RELEASE_IMAGES.map((key) => imageFile(key, manifest.name, manifest.version)),
  );
  for (const r of rebuilt.images) {
    const published = join(builds[1]!, r.image);
    assert.equal(r.sha256, (await sha256File(published)).toString('hex'), `${r.image} is byte-identical to the build`);
    assert.equal(r.sha256, manifest.artifacts[r.image]!.sha256, `${r.image} matches the signed manifest`);
  }
});

test('a host downloads only the changed chunks or patches: the usr image and the UKI are mostly reused, the verity tree is not', { skip }, () => {
  const [usr, verity, uki] = rebuilt.images.map((r) => r.plan.totals);
  for (const [name, t] of [
    ['usr.erofs', usr!],
    ['UKI', uki!],
  ] as const) {
    assert.ok(t.downloadChunks + t.patchedChunks >= 1, `${name}: the change is in at least one chunk`);
    assert.ok(t.reusedChunks > t.downloadChunks, `${name}: ${t.reusedChunks} chunks reused, ${t.downloadChunks} downloaded`);
    assert.ok(t.downloadBytes < t.fullBytes, `${name}: the delta is smaller than the image`);
  }
  // Its salt is the data's SHA-256, so every hash in the tree changes with the data.
  assert.equal(verity!.reusedChunks, 0);
});

test('the host holds the planned chunks and patches and nothing else', { skip }, async () => {
  const planned = new Set(rebuilt.images.filter((r) => !r.computed).flatMap((r) => r.plan.download.map((c) => c.sha256)));
  const files = (await readdir(rebuilt.hostStore, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile());
  assert.deepEqual(new Set(files.map((e) => e.name.replace(/\.br$/, ''))), planned);
  const patches = (await readdir(rebuilt.hostPatches, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile());
  assert.deepEqual(new Set(patches.map((e) => e.name.replace(/\.patch$/, ''))), new Set(rebuilt.images.flatMap((r) => r.plan.patches.map((p) => p.sha256))));
  assert.ok(patches.length > 0, 'the UKI at least is patched: only its command line changed');
  let bytes = 0;
  for (const e of [...files, ...patches]) bytes += (await stat(join(e.parentPath, e.name))).size;
  assert.equal(bytes, rebuilt.copiedBytes);
  const plan = JSON.parse(await cairn('delta', 'plan', builds[0]!, releaseDir, '--json'));
  assert.equal(plan.total.downloadBytes, rebuilt.copiedBytes, 'cairn delta plan names the same bytes');
});

test('without one of the downloaded chunks or patches the rebuild fails and leaves no file', { skip }, async () => {
  const [{ index }] = await releaseIndexes(releaseDir, publicKey);
  const usr = rebuilt.images[0]!;
  const store = new ChunkStore(rebuilt.hostStore);
  const { manifest } = await readManifest(builds[0]!);
  const have = await indexLocal(
    RELEASE_IMAGES.map((key) => ({ path: join(builds[0]!, imageFile(key, manifest.name, manifest.version)) })),
    index.params,
  );
  const out = join(work, 'host/partial.erofs');
  const chunk = usr.plan.download[0];
  const patch = usr.plan.patches[0];
  assert.ok(chunk || patch, 'the usr image needs something downloaded');
  if (chunk) {
    await rm(store.pathOf(chunk.sha256));
    await assert.rejects(reassemble(index, new DeltaSource(have, store), out), new RegExp(`chunk ${chunk.sha256} is not in the store`));
  } else {
    const lost = join(rebuilt.hostPatches, patchPath(patch!.sha256));
    await rm(lost);
    const fetch = (p: { sha256: string }) => readFile(join(rebuilt.hostPatches, patchPath(p.sha256)));
    await assert.rejects(reassemble(index, new DeltaSource(have, store, { index, patches: usr.plan.patches, fetch }), out), { code: 'ENOENT', path: lost });
  }
  await assert.rejects(stat(out), { code: 'ENOENT' });
});
