// A recipe that takes a package from a second suite of the Debian archive (NAME/SUITE with
// base.extra-suites, as `apt install NAME/SUITE` does with backports), resolved by `cairn lock`
// against the real, signed trixie and trixie-backports: that suite's newest version is locked,
// every other package still comes from trixie, and the lock records both InReleases.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openArchive } from '../../src/debian/archive.js';
import { FetchCache, defaultCacheDir } from '../../src/debian/fetch-cache.js';
import type { Lockfile } from '../../src/debian/lockfile.js';
import { compareVersions } from '../../src/debian/version.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const keyring = fileURLToPath(new URL('../../../keyrings/debian-archive-keyring.gpg', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'cairn-extra-suite-'));
after(() => rm(work, { recursive: true, force: true }));

async function lock(name: string, packages: string[], extraSuites: string[]): Promise<{ lock: Lockfile | null; stderr: string; code: number }> {
  const recipe = join(work, `${name}.yaml`);
  await writeFile(
    recipe,
    [
      `name: ${name}`,
      'version: "1"',
      'base:',
      `  extra-suites: [${extraSuites.join(', ')}]`,
      '  essential: false',
      `packages: [${packages.join(', ')}]`,
      'kernel: {package: linux-image-cloud-amd64}',
      '',
    ].join('\n'),
  );
  try {
    await run(process.execPath, [cli, 'lock', recipe]);
    return { lock: JSON.parse(await readFile(join(work, `${name}.lock`), 'utf8')) as Lockfile, stderr: '', code: 0 };
  } catch (err) {
    const e = err as { stderr: string; code: number };
    return { lock: null, stderr: e.stderr, code: e.code };
  }
}

test("NAME/SUITE locks the extra suite's newest NAME; the rest comes from the base suite", async () => {
  const cache = new FetchCache(defaultCacheDir());
  const open = (suite: string) => openArchive({ mirror: 'http://deb.debian.org/debian', suite, components: ['main'], architecture: 'amd64', keyring, cache });
  const [trixie, backports] = await Promise.all([open('trixie'), open('trixie-backports')]);
  const newest = (packages: typeof trixie.packages, name: string) =>
    packages.filter((p) => p.name === name).sort((a, b) => compareVersions(b.version, a.version))[0];
  const fromBackports = newest(backports.packages, 'linux-base');
  assert.ok(fromBackports, 'trixie-backports carries linux-base (the test needs a package it has)');

  const plain = await lock('plain', ['linux-base'], []);
  const pinned = await lock('pinned', ['linux-base/trixie-backports'], ['trixie-backports']);
  assert.equal(pinned.code, 0, pinned.stderr);
  const version = (l: Lockfile | null, name: string) => l?.packages.find((p) => p.name === name)?.version;
  assert.equal(version(plain.lock, 'linux-base'), newest(trixie.packages, 'linux-base')!.version);
  assert.equal(version(pinned.lock, 'linux-base'), fromBackports.version);
  // Only the named package moves: the kernel and everything else stay trixie's.
  assert.equal(version(pinned.lock, 'linux-image-cloud-amd64'), version(plain.lock, 'linux-image-cloud-amd64'));
  assert.deepEqual(
    pinned.lock!.extraOrigins?.map((o) => o.suite),
    ['trixie-backports'],
  );
  assert.equal(plain.lock!.extraOrigins, undefined, 'a lock without extra suites keeps its old shape');
  assert.notEqual(pinned.lock!.inputs, plain.lock!.inputs);
});

test('a package the extra suite lacks, or a suite the recipe does not list, is a clear error', async () => {
  const missing = await lock('missing', ['cairn-no-such-package/trixie-backports'], ['trixie-backports']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /packages names cairn-no-such-package\/trixie-backports, but trixie-backports has no cairn-no-such-package for amd64/);
  const unlisted = await lock('unlisted', ['linux-base/trixie-backports'], []);
  assert.notEqual(unlisted.code, 0);
  assert.match(
    unlisted.stderr,
    /unlisted\.yaml:\d+:\d+: packages\[0\]: "linux-base\/trixie-backports" names the suite "trixie-backports", which base\.extra-suites does not list/,
  );
});
