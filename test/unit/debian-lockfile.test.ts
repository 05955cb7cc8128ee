import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { formatLockfile, lockMatches, lockPathFor, readLockfile, resolutionInputs, writeLockfile, type Lockfile } from '../../src/debian/lockfile.js';
import type { Recipe } from '../../src/recipe/types.js';

const dir = await mkdtemp(join(tmpdir(), 'cairn-lock-'));
after(() => rm(dir, { recursive: true, force: true }));

const recipe = {
  file: '/r/host.yaml',
  name: 'host',
  version: '1',
  base: {
    suite: 'trixie',
    extraSuites: [],
    mirror: 'http://deb.debian.org/debian',
    components: ['main'],
    architecture: 'amd64',
    keyring: '/k.gpg',
    essential: true,
    priority: 'none',
  },
  packages: ['systemd', 'nodejs'],
  kernel: { package: 'linux-image-cloud-amd64', config: '/c' },
  hostname: 'h',
} as unknown as Recipe;

const hash = 'a'.repeat(64);
function lockFor(
  r: Recipe,
  packages: Lockfile['packages'] = [
    { name: 'zlib1g', version: '1:1.3', architecture: 'amd64', size: 10, sha256: hash, filename: 'pool/main/z/zlib/zlib1g_1.3_amd64.deb' },
  ],
): Lockfile {
  return {
    lockfileVersion: 1,
    recipe: r.name,
    inputs: resolutionInputs(r),
    origin: { mirror: r.base.mirror, suite: 'trixie', components: ['main'], architecture: 'amd64', inReleaseSha256: hash, date: '2026-11-21T09:15:44.000Z' },
    packages,
  };
}

test('the lock path sits beside the recipe', () => {
  assert.equal(lockPathFor('recipes/container-host.yaml'), 'recipes/container-host.lock');
  assert.equal(lockPathFor('x.yml'), 'x.lock');
});

test('only fields that change the resolution invalidate the lock', () => {
  const lock = lockFor(recipe);
  assert.ok(lockMatches(lock, { ...recipe, hostname: 'other', version: '2' } as Recipe));
  assert.ok(lockMatches(lock, { ...recipe, packages: ['nodejs', 'systemd', 'nodejs'] } as Recipe), 'order and duplicates do not matter');
  assert.ok(!lockMatches(lock, { ...recipe, packages: ['systemd'] } as Recipe));
  assert.ok(!lockMatches(lock, { ...recipe, base: { ...recipe.base, suite: 'forky' } } as Recipe));
  assert.ok(!lockMatches(lock, { ...recipe, kernel: { ...recipe.kernel, package: 'linux-image-amd64' } } as Recipe));
});

test('a written lock reads back identically and is sorted by name', async () => {
  const path = join(dir, 'a.lock');
  const lock = lockFor(recipe, [
    { name: 'zlib1g', version: '1:1.3', architecture: 'amd64', size: 10, sha256: hash, filename: 'pool/main/z/zlib/zlib1g_1.3_amd64.deb' },
    {
      name: 'base-files',
      version: '13.8',
      architecture: 'amd64',
      size: 70000,
      sha256: 'b'.repeat(64),
      filename: 'pool/main/b/base-files/base-files_13.8_amd64.deb',
    },
  ]);
  await writeLockfile(path, lock);
  const back = await readLockfile(path);
  assert.deepEqual(
    back?.packages.map((p) => p.name),
    ['base-files', 'zlib1g'],
  );
  assert.equal(await readFile(path, 'utf8'), formatLockfile(back!));
});

test('a missing lock reads as null', async () => {
  assert.equal(await readLockfile(join(dir, 'none.lock')), null);
});

for (const [what, mutate, message] of [
  [
    'a path outside the pool',
    (l: Lockfile) => {
      l.packages[0]!.filename = 'pool/../../etc/passwd.deb';
    },
    /packages\/0\/filename/,
  ],
  [
    'a short hash',
    (l: Lockfile) => {
      l.packages[0]!.sha256 = 'abc';
    },
    /packages\/0\/sha256/,
  ],
  [
    'an unknown field',
    (l: Lockfile) => {
      (l as unknown as Record<string, unknown>).extra = 1;
    },
    /additional properties/,
  ],
  [
    'a duplicated package',
    (l: Lockfile) => {
      l.packages.push({ ...l.packages[0]! });
    },
    /listed twice/,
  ],
  [
    'a mirror that is not http',
    (l: Lockfile) => {
      l.origin.mirror = 'file:///etc';
    },
    /origin\/mirror/,
  ],
] as const) {
  test(`a lock with ${what} is rejected`, async () => {
    const lock = lockFor(recipe);
    mutate(lock);
    const path = join(dir, 'bad.lock');
    await writeFile(path, JSON.stringify(lock));
    await assert.rejects(readLockfile(path), message);
  });
}

test('a lock that is not JSON is an error naming the file', async () => {
  const path = join(dir, 'garbage.lock');
  await writeFile(path, '{ nope');
  await assert.rejects(readLockfile(path), /garbage\.lock: not valid JSON/);
});
