// The content-addressed fetch cache against a loopback server that misbehaves on request:
// nothing unverified ever lands in the cache, interrupted downloads resume, a warm cache asks
// for nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { FetchCache, type FetchItem } from '../../src/debian/fetch-cache.js';
import { Progress } from '../../src/debian/progress.js';
import { createTestRepo, serveDir, type TestDeb, type TestRepo, type TestServer } from '../fixtures/debian-repo.js';
import { cairnError } from '../fixtures/assertions.js';

// Incompressible content so the .debs are big enough to interrupt half-way.
const noise = (seed: string, bytes: number): Buffer => {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < bytes; i++) parts.push(createHash('sha256').update(`${seed}${i}`).digest());
  return Buffer.concat(parts).subarray(0, bytes);
};

let repo: TestRepo;
let server: TestServer;
let cacheDir: string;
let cache: FetchCache;

const itemOf = (deb: TestDeb): FetchItem => ({ url: `${server.url}/${deb.filename}`, sha256: deb.sha256, size: deb.size, name: deb.filename });
const debRequests = (): string[] => server.requests.filter((r) => r.includes('.deb'));

/** Every file under the cache directory, to prove nothing unverified was left behind. */
async function cacheFiles(): Promise<string[]> {
  return (await readdir(cacheDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

before(async () => {
  repo = await createTestRepo({
    packages: ['alpha', 'beta', 'gamma'].map((name) => ({
      control: { Package: name, Version: '1.0-1', Architecture: 'amd64', Description: `test package ${name}` },
      files: [{ path: `./usr/share/${name}/blob`, content: noise(name, 200_000) }],
      compression: 'gz' as const,
    })),
  });
  server = await serveDir(repo.dir);
});
after(async () => {
  await server.close();
  await repo.cleanup();
});
afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'cairn-cache-'));
  cache = new FetchCache(cacheDir);
  server.requests.length = 0;
  server.bytesSent.clear();
  server.options = {};
});

describe('FetchCache.fetchAll', () => {
  test('downloads what is missing, and a warm cache makes no request', async () => {
    const items = repo.debs.map(itemOf);
    const cold = await cache.fetchAll(items, { progress: new Progress({ silent: true }) });
    assert.equal(cold.downloadedFiles, 3);
    assert.equal(cold.cachedFiles, 0);
    assert.equal(
      cold.downloadedBytes,
      repo.debs.reduce((n, d) => n + d.size, 0),
    );
    for (const deb of repo.debs) {
      const path = cold.paths.get(deb.sha256)!;
      assert.equal(path, join(cacheDir, 'sha256', deb.sha256.slice(0, 2), deb.sha256));
      assert.ok((await readFile(path)).equals(deb.data));
    }
    assert.equal(debRequests().length, 3);

    server.requests.length = 0;
    const warm = await new FetchCache(cacheDir).fetchAll([...items, items[0]]);
    assert.deepEqual(server.requests, []);
    assert.deepEqual(
      { downloadedFiles: warm.downloadedFiles, cachedFiles: warm.cachedFiles, downloadedBytes: warm.downloadedBytes },
      { downloadedFiles: 0, cachedFiles: 3, downloadedBytes: 0 },
    );
    assert.deepEqual([...warm.paths.keys()].sort(), repo.debs.map((d) => d.sha256).sort());
  });

  test('a .deb whose hash does not match is rejected and nothing is left in the cache', async () => {
    const deb = repo.debs[0];
    const evil = Buffer.from(deb.data);
    evil[evil.length - 10] ^= 0xff;
    server.options.replace = { [`/${deb.filename}`]: evil };
    const got = createHash('sha256').update(evil).digest('hex');
    await assert.rejects(
      cache.fetchAll([itemOf(deb)]),
      cairnError(
        new RegExp(
          `^${server.url}/${deb.filename}: SHA-256 mismatch \\(expected ${deb.sha256}, got ${got}\\): the mirror served a different file than the index declares$`,
        ),
      ),
    );
    assert.deepEqual(await cacheFiles(), []);
    assert.equal(await cache.has(deb.sha256), false);
  });

  test('an interrupted download resumes with a Range request and completes', async () => {
    const deb = repo.debs[1];
    const half = Math.floor(deb.size / 2);
    server.options.dropAfter = { [`/${deb.filename}`]: { bytes: half } };
    const result = await cache.fetchAll([itemOf(deb)]);
    const [first, second, ...rest] = debRequests();
    assert.equal(first, `GET /${deb.filename}`);
    // The resume starts where the received prefix ends (at most where the server cut).
    const from = Number(/ bytes=(\d+)-$/.exec(second)?.[1]);
    assert.ok(from > 0 && from <= half, `expected a Range request resuming within the first ${half} bytes, got "${second}"`);
    assert.deepEqual(rest, []);
    assert.ok((await readFile(result.paths.get(deb.sha256)!)).equals(deb.data));
    assert.equal(server.bytesSent.get(`/${deb.filename}`), half + deb.size - from);
    assert.equal(result.downloadedBytes, deb.size);
  });

  test('a server that ignores Range is read again from the start', async () => {
    const deb = repo.debs[2];
    const third = Math.floor(deb.size / 3);
    server.options = { dropAfter: { [`/${deb.filename}`]: { bytes: third } }, ignoreRange: true };
    const result = await cache.fetchAll([itemOf(deb)]);
    assert.equal(debRequests().length, 2);
    assert.match(debRequests()[1], / bytes=\d+-$/);
    assert.ok((await readFile(result.paths.get(deb.sha256)!)).equals(deb.data));
    assert.equal(server.bytesSent.get(`/${deb.filename}`), third + deb.size);
  });

  test('endless data is cut off at the declared size, not read to the end', async () => {
    const deb = repo.debs[0];
    server.options.endless = [`/${deb.filename}`];
    await assert.rejects(
      cache.fetchAll([itemOf(deb)]),
      cairnError(new RegExp(`${deb.filename}: the server sent more than the ${deb.size} bytes the index declares`)),
    );
    // Socket buffers let the server get ahead a little; it must not have streamed on and on.
    assert.ok(server.bytesSent.get(`/${deb.filename}`)! < deb.size + 16 * 1024 * 1024);
    assert.deepEqual(await cacheFiles(), []);
  });

  test('a body announced larger than declared is refused before it is read', async () => {
    const deb = repo.debs[0];
    server.options.replace = { [`/${deb.filename}`]: Buffer.concat([deb.data, Buffer.alloc(1)]) };
    await assert.rejects(cache.fetchAll([itemOf(deb)]), cairnError(/the server sent more than the \d+ bytes the index declares/));
    assert.deepEqual(await cacheFiles(), []);
  });

  test('a complete response shorter than declared is an error, not retried', async () => {
    const deb = repo.debs[0];
    server.options.replace = { [`/${deb.filename}`]: deb.data.subarray(0, 1000) };
    await assert.rejects(cache.fetchAll([itemOf(deb)]), cairnError(new RegExp(`the mirror served 1000 bytes but the index declares ${deb.size}$`)));
    assert.equal(debRequests().length, 1);
    assert.deepEqual(await cacheFiles(), []);
  });

  test('HTTP errors and hostile items are clear errors', async () => {
    const missing = { ...itemOf(repo.debs[0]), url: `${server.url}/pool/main/n/nope.deb` };
    await assert.rejects(cache.fetchAll([missing]), cairnError(/\/pool\/main\/n\/nope\.deb: HTTP 404$/));
    await assert.rejects(cache.fetchAll([{ ...missing, sha256: '../../../etc/passwd' }]), cairnError(/"\.\.\/\.\.\/\.\.\/etc\/passwd" is not a SHA-256/));
    await assert.rejects(cache.fetchAll([{ ...missing, url: 'file:///etc/passwd' }]), cairnError(/only http and https URLs/));
  });

  test('progress is drawn for a log as whole lines, ending with the totals', async () => {
    let out = '';
    const stream = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    await cache.fetchAll(repo.debs.map(itemOf), { progress: new Progress({ stream, label: 'fetching' }), concurrency: 2 });
    const lines = out.trimEnd().split('\n');
    assert.ok(lines.length >= 2 && lines.length <= 13, `expected a line per tenth at most, got ${lines.length}`);
    const total = repo.debs.reduce((n, d) => n + d.size, 0);
    assert.match(lines.at(-1)!, new RegExp(`^fetching: 3/3 files, ${(total / 1024).toFixed(1)} KiB of ${(total / 1024).toFixed(1)} KiB, `));
  });
});

describe('FetchCache.put/get', () => {
  test('stores by hash, refuses wrong bytes, and drops a corrupted entry', async () => {
    const data = Buffer.from('Package: x\n');
    const sha = await cache.put(data);
    assert.equal(sha, createHash('sha256').update(data).digest('hex'));
    assert.ok((await cache.get(sha))!.equals(data));
    await assert.rejects(cache.put(Buffer.from('other'), sha), cairnError(/refusing to cache data as/));
    await writeFile(cache.pathFor(sha), 'Package: y\n');
    assert.equal(await cache.get(sha), null);
    assert.equal(await cache.has(sha), false);
  });
});
