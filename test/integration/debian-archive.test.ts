// openArchive against a repository the test builds and serves on loopback: the chain
// keyring → InRelease → Packages must hold, and every broken link must be a clear error.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openArchive, type ArchiveOptions } from '../../src/debian/archive.js';
import { FetchCache } from '../../src/debian/fetch-cache.js';
import { createTestRepo, generateTestKey, serveDir, writeKeyring, type TestRepo, type TestRepoOptions, type TestServer } from '../fixtures/debian-repo.js';
import type { DebSpec } from '../fixtures/make-deb.js';
import { cairnError } from '../fixtures/assertions.js';

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

const PACKAGES: DebSpec[] = [
  { control: { Package: 'hello', Version: '2.10-3', Architecture: 'amd64', Depends: 'libc6 (>= 2.34)', Description: 'greets' } },
  { control: { Package: 'libc6', Version: '2.41-12', Architecture: 'amd64', Priority: 'required', Description: 'C library' } },
  { control: { Package: 'base-files', Version: '13.8', Architecture: 'amd64', Essential: 'yes', Description: 'base' } },
];

const open: { repo: TestRepo; server: TestServer; cacheDir: string }[] = [];

/** A fresh repository, server and cache; torn down after the file's tests. */
async function setup(opts: Partial<TestRepoOptions> = {}) {
  const repo = await createTestRepo({ packages: PACKAGES, ...opts });
  const server = await serveDir(repo.dir);
  const cacheDir = await mkdtemp(join(tmpdir(), 'cairn-archive-cache-'));
  open.push({ repo, server, cacheDir });
  const options: ArchiveOptions = {
    mirror: server.url,
    suite: repo.suite,
    components: repo.components,
    architecture: repo.architecture,
    keyring: repo.keyringPath,
    cache: new FetchCache(cacheDir),
  };
  return { repo, server, cacheDir, options, inReleasePath: join(repo.dir, 'dists', repo.suite, 'InRelease') };
}

after(async () => {
  for (const { repo, server, cacheDir } of open) {
    await server.close();
    await repo.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
  }
});

describe('openArchive', () => {
  let fixture: Awaited<ReturnType<typeof setup>>;
  before(async () => {
    fixture = await setup();
  });

  test('verifies InRelease, fetches the xz index and parses every package', async () => {
    const { repo, server, options, inReleasePath } = fixture;
    const archive = await openArchive(options);
    const inRelease = await readFile(inReleasePath);
    assert.deepEqual(archive.origin, {
      mirror: server.url,
      suite: 'trixie',
      inReleaseSha256: sha256(inRelease),
      date: archive.release.date.toISOString(),
    });
    assert.ok(archive.inRelease.equals(inRelease));
    assert.deepEqual(
      archive.packages.map((p) => [p.name, p.version, p.filename, p.size, p.sha256]),
      repo.debs.map((d) => [d.name, d.version, d.filename, d.size, d.sha256]),
    );
    assert.deepEqual(archive.packages[0].depends, [[{ name: 'libc6', arch: null, op: '>=', version: '2.34' }]]);
    assert.deepEqual(server.requests, ['GET /dists/trixie/InRelease', 'GET /dists/trixie/main/binary-amd64/Packages.xz']);
  });

  test('a warm cache asks only for InRelease', async () => {
    const { server, options } = fixture;
    await openArchive(options);
    server.requests.length = 0;
    const again = await openArchive(options);
    assert.deepEqual(server.requests, ['GET /dists/trixie/InRelease']);
    assert.equal(again.packages.length, PACKAGES.length);
  });

  test('a missing suite or component is a clear error', async () => {
    const { options } = fixture;
    await assert.rejects(openArchive({ ...options, suite: 'nosuch' }), cairnError(/\/dists\/nosuch\/InRelease: HTTP 404$/));
    await assert.rejects(openArchive({ ...options, components: ['main', 'contrib'] }), cairnError(/has no component "contrib" \(it has main\)/));
    await assert.rejects(openArchive({ ...options, architecture: 'arm64' }), cairnError(/has no architecture "arm64" \(it has amd64\)/));
    await assert.rejects(openArchive({ ...options, suite: '../etc' }), cairnError(/suite "\.\.\/etc" is not a valid Debian suite name/));
    await assert.rejects(openArchive({ ...options, mirror: 'ftp://example.org/debian' }), cairnError(/must be an http or https URL/));
  });
});

describe('openArchive index fallbacks', () => {
  test('uses Packages.gz, then plain Packages, when that is all the InRelease lists', async () => {
    for (const [kind, file] of [
      ['gz', 'Packages.gz'],
      ['none', 'Packages'],
    ] as const) {
      const { server, options } = await setup({ indexes: [kind] });
      const archive = await openArchive(options);
      assert.equal(archive.packages.length, PACKAGES.length);
      assert.deepEqual(server.requests, ['GET /dists/trixie/InRelease', `GET /dists/trixie/main/binary-amd64/${file}`]);
    }
  });

  test('follows Acquire-By-Hash', async () => {
    const { repo, server, options } = await setup({ indexes: ['gz'] });
    const gz = await readFile(join(repo.dir, 'dists/trixie/main/binary-amd64/Packages.gz'));
    server.options.replace = { [`/dists/trixie/main/binary-amd64/by-hash/SHA256/${sha256(gz)}`]: gz };
    await repo.sign(repo.release.replace('SHA256:', 'Acquire-By-Hash: yes\nSHA256:'));
    await openArchive(options);
    assert.deepEqual(server.requests, ['GET /dists/trixie/InRelease', `GET /dists/trixie/main/binary-amd64/by-hash/SHA256/${sha256(gz)}`]);
  });
});

describe('openArchive rejects broken trust', () => {
  test('an InRelease changed after signing', async () => {
    const { repo, options, inReleasePath } = await setup();
    const text = await readFile(inReleasePath, 'utf8');
    const forged = sha256('forged');
    const entry = /^ ([0-9a-f]{64}) +(\d+) main\/binary-amd64\/Packages\.xz$/m.exec(text)!;
    await writeFile(inReleasePath, text.replace(entry[1], forged));
    await assert.rejects(
      openArchive(options),
      cairnError(
        new RegExp(
          `^InRelease from http://127\\.0\\.0\\.1:\\d+/dists/trixie: the signature by ${repo.key.getKeyID().toHex().toUpperCase()} \\(a key in ${repo.keyringPath}\\) is invalid`,
        ),
      ),
    );
  });

  test('an InRelease signed by a key that is not in the keyring', async () => {
    const { repo, options } = await setup({ key: await generateTestKey('impostor') });
    const keyring = join(repo.dir, 'other.gpg');
    await writeKeyring(keyring, [await generateTestKey('the real archive')]);
    await assert.rejects(
      openArchive({ ...options, keyring }),
      cairnError(
        new RegExp(
          `^InRelease from http://127\\.0\\.0\\.1:\\d+/dists/trixie: signature does not verify with any key in ${keyring} \\(signed by ${repo.key.getKeyID().toHex().toUpperCase()}\\)$`,
        ),
      ),
    );
  });

  test('an unsigned InRelease', async () => {
    const { repo, options, inReleasePath } = await setup();
    await writeFile(inReleasePath, repo.release);
    await assert.rejects(openArchive(options), cairnError(/dists\/trixie: not signed/));
  });

  test('stale metadata (Valid-Until in the past)', async () => {
    const { options } = await setup({ date: new Date(Date.now() - 10 * 86_400_000), validUntil: new Date(Date.now() - 3 * 86_400_000) });
    await assert.rejects(openArchive(options), cairnError(/dists\/trixie: stale metadata: Valid-Until .* has passed/));
    // The same metadata judged at a time it was valid is accepted.
    assert.equal((await openArchive({ ...options, now: new Date(Date.now() - 5 * 86_400_000) })).packages.length, PACKAGES.length);
  });

  test('an InRelease for another suite', async () => {
    const { repo, options } = await setup();
    await repo.sign(repo.release.replace('Suite: trixie', 'Suite: oldstable').replace('Codename: trixie', 'Codename: bookworm'));
    await assert.rejects(openArchive(options), cairnError(/describes suite "oldstable" \(codename "bookworm"\), not "trixie"/));
  });

  test('a Packages index whose hash does not match InRelease, leaving nothing in the cache', async () => {
    const { repo, options, cacheDir } = await setup();
    const path = join(repo.dir, 'dists/trixie/main/binary-amd64/Packages.xz');
    const xz = await readFile(path);
    const declared = sha256(xz);
    xz[xz.length - 20] ^= 0x01;
    await writeFile(path, xz);
    await assert.rejects(
      openArchive(options),
      cairnError(new RegExp(`/dists/trixie/main/binary-amd64/Packages\\.xz: SHA-256 mismatch \\(expected ${declared}, got ${sha256(xz)}\\)`)),
    );
    const cached = (await readdir(cacheDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    // Only the verified InRelease may be there.
    assert.deepEqual(cached, [sha256(await readFile(join(repo.dir, 'dists/trixie/InRelease')))]);
  });

  test('a compressed index that decompresses to other content than declared', async () => {
    const { repo, options } = await setup({ indexes: ['gz'] });
    const plain = /^ ([0-9a-f]{64}) +\d+ main\/binary-amd64\/Packages$/m.exec(repo.release)!;
    await repo.sign(repo.release.replace(plain[1], sha256('something else')));
    await assert.rejects(
      openArchive(options),
      cairnError(/Packages\.gz: decompresses to \d+ bytes with SHA-256 [0-9a-f]{64}, but InRelease declares main\/binary-amd64\/Packages as/),
    );
  });

  test('an endless InRelease is cut off', async () => {
    const { server, options } = await setup();
    server.options.endless = ['/dists/trixie/InRelease'];
    await assert.rejects(openArchive(options), cairnError(/InRelease: larger than the 16777216 bytes cairn accepts for it/));
    assert.ok(server.bytesSent.get('/dists/trixie/InRelease')! < 64 * 1024 * 1024);
  });
});
