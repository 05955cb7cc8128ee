// The real Debian archive (needs the network): the shipped keyring verifies today's trixie
// InRelease, the main index parses, and a real .deb comes through the cache intact.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openArchive, type Archive } from '../../src/debian/archive.js';
import { FetchCache } from '../../src/debian/fetch-cache.js';

const MIRROR = process.env.CAIRN_TEST_MIRROR ?? 'http://deb.debian.org/debian';
const KEYRING = fileURLToPath(new URL('../../../keyrings/debian-archive-keyring.gpg', import.meta.url));

let cacheDir: string;
let cache: FetchCache;
let archive: Archive;

before(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'cairn-real-cache-'));
  cache = new FetchCache(cacheDir);
  archive = await openArchive({ mirror: MIRROR, suite: 'trixie', components: ['main'], architecture: 'amd64', keyring: KEYRING, cache });
});
after(() => rm(cacheDir, { recursive: true, force: true }));

test('trixie main/amd64 verifies with the shipped keyring and parses', () => {
  assert.equal(archive.release.codename, 'trixie');
  assert.match(archive.origin.inReleaseSha256, /^[0-9a-f]{64}$/);
  assert.equal(archive.origin.inReleaseSha256, createHash('sha256').update(archive.inRelease).digest('hex'));
  assert.ok(archive.packages.length > 30_000, `only ${archive.packages.length} packages parsed`);
  const systemd = archive.packages.find((p) => p.name === 'systemd');
  assert.ok(systemd, 'systemd is not in trixie main');
  assert.match(systemd.sha256, /^[0-9a-f]{64}$/);
  assert.match(systemd.filename, /^pool\/main\/s\/systemd\/systemd_.*_amd64\.deb$/);
});

test('a real .deb is fetched, verified and then served from the cache', async () => {
  const hello = archive.packages.find((p) => p.name === 'hello' && p.architecture === 'amd64');
  assert.ok(hello, 'hello is not in trixie main');
  const item = { url: `${MIRROR}/${hello.filename}`, sha256: hello.sha256, size: hello.size, name: hello.filename };
  const cold = await cache.fetchAll([item]);
  assert.equal(cold.downloadedFiles, 1);
  const data = await readFile(cold.paths.get(hello.sha256)!);
  assert.equal(data.length, hello.size);
  assert.equal(createHash('sha256').update(data).digest('hex'), hello.sha256);
  assert.equal(data.subarray(0, 8).toString('latin1'), '!<arch>\n');
  const warm = await cache.fetchAll([item]);
  assert.deepEqual([warm.downloadedFiles, warm.cachedFiles, warm.downloadedBytes], [0, 1, 0]);
});
