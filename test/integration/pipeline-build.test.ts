// The build pipeline (buildImage, and `cairn build` for what it prints) against a Debian repository
// the test makes and serves on loopback: lock creation and reuse, a warm cache that downloads
// nothing, --frozen, the kernel check that stops a build before anything is assembled, and
// byte-identical rootfs.tar across builds.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FetchCache } from '../../src/debian/fetch-cache.js';
import { buildImage, type BuildResult } from '../../src/pipeline/build-image.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { createTestRepo, serveDir, type TestRepo, type TestServer } from '../fixtures/debian-repo.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const root = process.getuid?.() === 0;

let repo: TestRepo;
let server: TestServer;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-pipeline-'));
  repo = await createTestRepo({
    packages: [
      {
        control: { Package: 'hello', Version: '2.0-1', Architecture: 'amd64', Depends: 'libhello (>= 1.0), awk | mawk', 'Installed-Size': '10' },
        files: [{ path: './usr/bin/hello', content: '#!/bin/sh\necho hello\n', mode: 0o755 }],
      },
      {
        control: { Package: 'libhello', Version: '1.2-1', Architecture: 'amd64', 'Installed-Size': '10' },
        files: [{ path: './usr/lib/libhello.so.1', content: 'lib' }],
      },
      {
        control: { Package: 'mawk', Version: '1.3-1', Architecture: 'amd64', Provides: 'awk', 'Installed-Size': '10' },
        files: [{ path: './usr/bin/mawk', content: 'awk', mode: 0o755 }],
      },
      {
        control: { Package: 'base-lite', Version: '1', Architecture: 'amd64', Essential: 'yes', 'Installed-Size': '10' },
        files: [{ path: './bin/sh', content: 'sh', mode: 0o755 }],
      },
      { control: { Package: 'extra', Version: '1', Architecture: 'all', 'Installed-Size': '10' }, files: [{ path: './usr/share/extra', content: 'x' }] },
      {
        control: { Package: 'linux-image-test', Version: '6.12-1', Architecture: 'amd64', 'Installed-Size': '10' },
        files: [
          { path: './boot/config-6.12-test', content: 'CONFIG_EROFS_FS=m\nCONFIG_DM_VERITY=y\n# CONFIG_DEBUG is not set\n' },
          { path: './boot/vmlinuz-6.12-test', content: 'kernel' },
        ],
      },
    ],
  });
  server = await serveDir(repo.dir);
  await writeFile(join(work, 'kernel.config'), 'CONFIG_EROFS_FS=m\nCONFIG_DM_VERITY=m\n');
  await writeFile(join(work, 'strict.config'), 'CONFIG_EROFS_FS=y\nCONFIG_OVERLAY_FS=m\n');
});

after(async () => {
  await server?.close();
  await repo?.cleanup();
  await rm(work, { recursive: true, force: true });
});

function recipeText(packages: string[], kernelConfig = 'kernel.config'): string {
  return [
    'name: pipeline',
    'version: 1.0.0',
    'base:',
    `  mirror: ${server.url}`,
    `  suite: ${repo.suite}`,
    `  keyring: ${repo.keyringPath}`,
    '  essential: true',
    `packages: [${packages.join(', ')}]`,
    'kernel:',
    '  package: linux-image-test',
    `  config: ${kernelConfig}`,
    'init: /usr/bin/hello',
    '',
  ].join('\n');
}

// Asynchronous on purpose: the repository server runs in this process and must keep answering.
/** The tree stage of `file` (relative to the work folder), as `cairn build --stage rootfs` runs it. */
async function build(file: string): Promise<BuildResult> {
  // The packages here are fakes: the tree is as far as they go.
  return buildImage(await loadRecipe(join(work, file)), { stage: 'rootfs', cache: new FetchCache(join(work, 'cache')), out: join(work, 'images') });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the CLI's JSON, asserted field by field
function cairn(...args: string[]): Promise<{ status: number; stdout: string; stderr: string; json: any }> {
  return new Promise((resolve) => {
    // The packages here are fakes: the tree is as far as they go.
    const out = args[0] === 'build' ? ['--out', join(work, 'images'), '--stage', 'rootfs'] : [];
    execFile(process.execPath, [cli, ...args, '--cache', join(work, 'cache'), ...out], { encoding: 'utf8', cwd: work }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ status, stdout, stderr, json: status === 0 && stdout.startsWith('{') ? JSON.parse(stdout) : null });
    });
  });
}

test('a first build resolves, writes the lock and assembles the tree', { skip: !root && 'needs root (owners in the tree)' }, async () => {
  await writeFile(join(work, 'pipeline.yaml'), recipeText(['hello']));
  const r = await build('pipeline.yaml');
  assert.equal(r.lockfile.status, 'created');
  const lock = JSON.parse(readFileSync(join(work, 'pipeline.lock'), 'utf8'));
  assert.deepEqual(
    lock.packages.map((p: { name: string }) => p.name),
    ['base-lite', 'hello', 'libhello', 'linux-image-test', 'mawk'],
  );
  assert.equal(r.rootfs.downloadedFiles, 5);
  const tree = join(work, 'images/pipeline/1.0.0/rootfs');
  assert.ok(existsSync(join(tree, 'usr/bin/hello')));
  assert.ok(existsSync(join(tree, 'usr/bin/sh')), 'bin/sh is merged into usr');
  assert.ok(lstatSync(join(tree, 'bin')).isSymbolicLink());
  assert.equal(readlinkSync(join(tree, 'bin')), 'usr/bin');
  assert.ok(!existsSync(join(tree, 'usr/share/extra')), 'only what was asked for and its dependencies');
});

test('a second build with the lock and a warm cache makes no request at all and gives the same tar', { skip: !root && 'needs root' }, async () => {
  const first = readFileSync(join(work, 'images/pipeline/1.0.0/rootfs.tar'));
  const requestsBefore = server.requests.length;
  const r = await build('pipeline.yaml');
  assert.equal(r.lockfile.status, 'unchanged');
  assert.equal(r.rootfs.downloadedFiles, 0);
  assert.deepEqual(server.requests.slice(requestsBefore), []);
  assert.ok(first.equals(readFileSync(join(work, 'images/pipeline/1.0.0/rootfs.tar'))), 'rootfs.tar is byte-identical');
});

test('--frozen refuses a lock that no longer matches the recipe, and leaves it as it was', { skip: !root && 'needs root' }, async () => {
  const lockBefore = readFileSync(join(work, 'pipeline.lock'), 'utf8');
  await writeFile(join(work, 'pipeline.yaml'), recipeText(['hello', 'extra']));
  const r = await cairn('build', 'pipeline.yaml', '--frozen');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /pipeline\.lock does not match the recipe/);
  assert.match(r.stderr, /hint: run "cairn lock RECIPE"/);
  assert.equal(readFileSync(join(work, 'pipeline.lock'), 'utf8'), lockBefore);
});

test('without --frozen a changed recipe refreshes the lock', { skip: !root && 'needs root' }, async () => {
  const r = await build('pipeline.yaml');
  assert.equal(r.lockfile.status, 'refreshed');
  assert.equal(r.rootfs.downloadedFiles, 1, 'only the new package is downloaded');
  assert.ok(existsSync(join(work, 'images/pipeline/1.0.0/rootfs/usr/share/extra')));
});

test('cairn lock reports what changed', async () => {
  const r = await cairn('lock', 'pipeline.yaml', '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.json.packages, 6);
  assert.deepEqual(r.json.changed, []);
});

test('a kernel that misses options stops the build before anything is assembled, listing each', async () => {
  await writeFile(join(work, 'strict.yaml'), recipeText(['hello'], 'strict.config').replace('name: pipeline', 'name: strict'));
  const r = await cairn('build', 'strict.yaml');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /the kernel does not satisfy .*strict\.config \(2 options\)/);
  assert.match(r.stderr, /CONFIG_EROFS_FS: needs y, kernel has m/);
  assert.match(r.stderr, /CONFIG_OVERLAY_FS: needs y or m, kernel has not set/);
  assert.ok(!existsSync(join(work, 'images/strict')), 'no output was started');
});

test('an unknown package is explained before anything is fetched', async () => {
  await writeFile(join(work, 'unknown.yaml'), recipeText(['helo']).replace('name: pipeline', 'name: unknown'));
  const r = await cairn('build', 'unknown.yaml');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /helo/);
  assert.match(r.stderr, /did you mean "?hello"?/);
  assert.ok(!existsSync(join(work, 'unknown.lock')));
});
