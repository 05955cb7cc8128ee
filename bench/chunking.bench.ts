// Chunking throughput on the default image's usr.erofs, beside the tools a user would compare:
// sha256sum of the same file (the floor: one read and one hash; node's own SHA-256 beside it),
// cairn's chunker (cut + SHA-256 of each chunk), cairn's chunk index into an empty store
// (+ Brotli and a file per chunk: what publish does per image) and `casync make` into an empty
// store (+ zstd and a file per chunk). Then `cairn publish` of release 1 into an empty repository
// and of release 2 after it, and how much of that is the up-front check of the build. Each
// figure is the median of three runs, the file in the page cache.
// Usage (as root): npm run bench:chunking [-- RECIPE [SUITE:PKG,PKG]]  or  [-- OLD_BUILD NEW_BUILD] to reuse builds.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sha256File } from '../src/hash-file.js';
import { buildChunkIndex } from '../src/release/chunk-index.js';
import { ChunkStore } from '../src/release/chunk-store.js';
import { chunkFile } from '../src/release/chunker.js';
import { readManifest } from '../src/pipeline/manifest.js';
import { imageFile, RELEASE_IMAGES } from '../src/release/release-record.js';
import { buildTwoReleases, cairn, parseUpgrade } from './two-releases.js';

const run = promisify(execFile);
const RUNS = 3;
const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

const isBuild = (dir: string | undefined): Promise<boolean> =>
  dir === undefined
    ? Promise.resolve(false)
    : stat(join(dir, 'manifest.json')).then(
        (s) => s.isFile(),
        () => false,
      );

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median seconds of RUNS runs of `fn`; `setup` runs untimed before each (e.g. an empty store). */
async function measure(fn: (i: number) => Promise<unknown>, setup?: (i: number) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await setup?.(i);
    const start = process.hrtime.bigint();
    await fn(i);
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  return median(times);
}

const work = await mkdtemp(join(process.env.CAIRN_BENCH_DIR ?? tmpdir(), 'cairn-chunking-bench-'));
try {
  const args = process.argv.slice(2);
  let builds: [string, string];
  let signKey: string;
  if (args.length === 2 && (await isBuild(args[0])) && (await isBuild(args[1]))) {
    builds = [args[0]!, args[1]!];
    await cairn(['keys', 'generate', '--out', join(work, 'keys')]);
    signKey = join(work, 'keys/release.asc');
  } else {
    const releases = await buildTwoReleases(args[0] ?? 'recipes/container-host.yaml', work, { upgrade: parseUpgrade(args[1]), log });
    builds = [releases.old.build, releases.new.build];
    signKey = releases.signKey;
  }
  const image = join(builds[0], 'usr.erofs');
  const size = (await stat(image)).size;
  await sha256File(image); // into the page cache: every tool below reads it from memory
  const scratch = (i: number) => join(work, `store-${i}`);
  const clear = (i: number) => rm(scratch(i), { recursive: true, force: true });

  log('sha256sum, cairn chunker, cairn chunk index, casync make');
  const rows: [string, number][] = [];
  rows.push(['sha256sum (floor)', await measure(() => run('sha256sum', [image]))]);
  rows.push(['SHA-256 in node (sha256File, OpenSSL)', await measure(() => sha256File(image))]);
  let chunks = 0;
  rows.push([
    'cairn chunker (cut + SHA-256)',
    await measure(async () => {
      chunks = 0;
      for await (const _ of chunkFile(image)) chunks++;
    }),
  ]);
  rows.push(['cairn chunk index, empty store (+ brotli-5, files)', await measure((i) => buildChunkIndex(image, new ChunkStore(scratch(i))), clear)]);
  rows.push([
    'casync make, empty store (+ zstd, files)',
    await measure((i) => run('casync', ['make', `--store=${scratch(i)}`, join(work, `${i}.caibx`), image]), clear),
  ]);
  rows.push(['casync make, store already full', await measure((i) => run('casync', ['make', `--store=${scratch(i)}`, join(work, `${i}.caibx`), image]))]);
  for (let i = 0; i < RUNS; i++) await clear(i);

  log('cairn publish, first and second release');
  const firsts: number[] = [];
  const seconds: number[] = [];
  // Publish first checks every artifact of the manifest against the build folder, disk.raw
  // included; publishing the same build again does that check and nothing else.
  const checks: number[] = [];
  let added = { first: 0, second: 0 };
  for (let i = 0; i < RUNS; i++) {
    const repo = join(work, `repo-${i}`);
    const publish = async (build: string) => JSON.parse(await cairn(['publish', build, '--repo', repo, '--sign-key', signKey, '--json']));
    const a = await publish(builds[0]);
    const b = await publish(builds[1]);
    const again = await publish(builds[1]);
    if (!again.alreadyPublished) throw new Error('publishing the same build twice changed the repository');
    firsts.push(a.seconds);
    seconds.push(b.seconds);
    checks.push(again.seconds);
    const addedBytes = (r: { images: { addedBytes: number }[] }) => r.images.reduce((s, x) => s + x.addedBytes, 0);
    added = { first: addedBytes(a), second: addedBytes(b) };
    await rm(repo, { recursive: true, force: true });
  }
  // What publish reads: the release images, not disk.raw.
  const imagesBytes = async (build: string) => {
    const m = (await readManifest(build)).manifest;
    return RELEASE_IMAGES.reduce((s, key) => s + m.artifacts[imageFile(key, m.name, m.version)]!.size, 0);
  };

  const mb = (bytes: number, s: number): string => (bytes / 1e6 / s).toFixed(0);
  const chunker = rows.find(([name]) => name.startsWith('cairn chunker'))![1];
  const out: string[] = [];
  out.push(`${image}: ${(size / 1048576).toFixed(1)} MiB, ${chunks} chunks; median of ${RUNS} runs, ${new Date().toISOString()}`);
  out.push('');
  out.push('| tool | seconds | MB/s | time / cairn chunker |');
  out.push('|---|---:|---:|---:|');
  for (const [name, s] of rows) out.push(`| ${name} | ${s.toFixed(2)} | ${mb(size, s)} | ${(s / chunker).toFixed(2)}x |`);
  out.push('');
  out.push('| cairn publish (usr.erofs, usr.verity, UKI) | seconds | MB/s | compressed bytes added to the store |');
  out.push('|---|---:|---:|---:|');
  for (const [name, build, times, bytes] of [
    ['first, empty repository', builds[0], firsts, added.first],
    ['second, next release', builds[1], seconds, added.second],
  ] as const) {
    const s = median(times);
    out.push(`| ${name} | ${s.toFixed(1)} | ${mb(await imagesBytes(build), s)} | ${(bytes / 1048576).toFixed(1)} MiB |`);
  }
  const diskBytes = (await readManifest(builds[1])).manifest.artifacts['disk.raw']?.size ?? 0;
  out.push(
    `| the same build again (a no-op: checks every artifact against the manifest, disk.raw ${(diskBytes / 2 ** 30).toFixed(1)} GiB included) | ${median(checks).toFixed(1)} | | 0 |`,
  );
  process.stdout.write(out.join('\n') + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
