// What a host on release 1 downloads to install release 2, per image and in total: cairn's delta
// (the chunks and patches `cairn delta plan` says it needs; the verity tree is computed on the
// host) beside the full compressed image, casync
// (make + extract with the old images as seeds, chunks counted as a loopback HTTP server sends
// them), zstd --patch-from and xdelta3, all on the same pair in one run; and the compressed size
// of what really changed (the /usr files, the upgraded .debs) as the goal. Then the host side:
// the new images are rebuilt from the old ones plus only the downloaded chunks and compared
// with the published ones. What-ifs follow: smaller chunks, a verity tree with a fixed salt, and
// zstd patches of the same runs for comparison with cairn's own. Release 2 is described in bench/two-releases.ts; the figures
// and what they mean are in docs/deltas.md.
// Usage (as root; network for the archive): npm run bench:delta [-- RECIPE [SUITE:PKG,PKG]]
import { constants } from 'node:fs';
import { access, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readRange } from '../src/file-range.js';
import { sha256File } from '../src/hash-file.js';
import { runToolBytes } from '../src/host-tool.js';
import { computeVerity } from '../src/image/verity.js';
import { buildChunkIndex, validateChunkIndex, type ChunkIndex } from '../src/release/chunk-index.js';
import { ChunkStore } from '../src/release/chunk-store.js';
import { DEFAULT_CHUNK_PARAMS, type ChunkParams } from '../src/release/chunker.js';
import { indexLocal, planDelta } from '../src/release/delta-plan.js';
import { unpackJson } from '../src/document/json-document.js';
import { readManifest } from '../src/pipeline/manifest.js';
import { imageFile, RELEASE_IMAGES } from '../src/release/release-record.js';
import { startStaticServer } from '../src/release/static-server.js';
import { reconstructRelease } from '../test/fixtures/delta-reconstruct.js';
import { buildTwoReleases, cairn, parseUpgrade } from './two-releases.js';

const TOOLS = ['casync', 'zstd', 'xdelta3', 'tar'];
const recipeFile = process.argv[2] ?? 'recipes/container-host.yaml';
const upgrade = parseUpgrade(process.argv[3]);
const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

async function onPath(tool: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (
      await access(join(dir, tool), constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
}

/** Runs `fn` and returns its result and the seconds it took. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = process.hrtime.bigint();
  const result = await fn();
  return [result, Number(process.hrtime.bigint() - start) / 1e9];
}

async function sameFile(a: string, b: string): Promise<boolean> {
  return (await sha256File(a)).equals(await sha256File(b));
}

async function mustMatch(rebuilt: string, published: string, how: string): Promise<void> {
  if (!(await sameFile(rebuilt, published))) throw new Error(`${how}: ${rebuilt} differs from ${published}`);
}

const size = async (path: string): Promise<number> => (await stat(path)).size;

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(2)} MiB`;
}

function ratio(n: number, of: number): string {
  if (of === 0) return '–';
  const r = n / of;
  return `${r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}x`;
}

/** Bytes, and their ratio to cairn's. */
const vs = (n: number, cairnBytes: number): string => `${human(n)} (${ratio(n, cairnBytes)})`;

interface Entry {
  type: 'file' | 'link' | 'other';
  size: number;
  link?: string;
}

async function walk(root: string, rel = ''): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(root, path));
    if (st.isDirectory()) for (const [k, v] of await walk(root, path)) out.set(k, v);
    else if (st.isSymbolicLink()) out.set(path, { type: 'link', size: 0, link: await readlink(join(root, path)) });
    else out.set(path, { type: st.isFile() ? 'file' : 'other', size: st.size });
  }
  return out;
}

/** Files of `newRoot` that are new or differ from `oldRoot` (paths relative to the roots). */
async function changedFiles(oldRoot: string, newRoot: string): Promise<{ changed: string[]; removed: number; rawBytes: number }> {
  const [a, b] = await Promise.all([walk(oldRoot), walk(newRoot)]);
  const changed: string[] = [];
  let rawBytes = 0;
  for (const [path, e] of b) {
    const o = a.get(path);
    const same =
      o !== undefined &&
      o.type === e.type &&
      o.size === e.size &&
      o.link === e.link &&
      (e.type !== 'file' || (await sameFile(join(oldRoot, path), join(newRoot, path))));
    if (!same) {
      changed.push(path);
      rawBytes += e.size;
    }
  }
  return { changed, removed: [...a.keys()].filter((p) => !b.has(p)).length, rawBytes };
}

/** What cairn would download for the new images with other chunking parameters (a scratch store gives the compressed sizes). */
async function downloadWith(
  params: ChunkParams,
  oldFiles: string[],
  newFiles: string[],
  scratch: string,
): Promise<{ download: number; full: number; chunks: number }> {
  const store = new ChunkStore(scratch);
  try {
    const have = await indexLocal(
      oldFiles.map((path) => ({ path })),
      params,
    );
    let download = 0;
    let full = 0;
    let chunks = 0;
    for (const file of newFiles) {
      const plan = planDelta(await buildChunkIndex(file, store, params), have);
      download += plan.totals.downloadBytes;
      full += plan.totals.fullBytes;
      chunks += plan.totals.chunks;
    }
    return { download, full, chunks };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Old ranges larger than this are not worth a patch: the run moved, and is compressed alone. */
const MAX_PATCH_REFERENCE = 16 << 20;

/**
 * What-if: instead of the missing chunks themselves, a patch for each run of consecutive missing
 * chunks against the old image's bytes between the run's unchanged neighbours (zstd -19
 * --patch-from): a host has those bytes, and a run differs from them by what really changed.
 */
async function runPatches(
  oldIndex: ChunkIndex,
  newIndex: ChunkIndex,
  oldFile: string,
  newFile: string,
  scratch: string,
): Promise<{ bytes: number; runs: number; alone: number }> {
  const old = new Map(oldIndex.chunks.map((c) => [c.sha256, c]));
  const chunks = newIndex.chunks;
  let bytes = 0;
  let runs = 0;
  let alone = 0;
  for (let i = 0; i < chunks.length;) {
    if (old.has(chunks[i]!.sha256)) {
      i++;
      continue;
    }
    let j = i;
    while (j + 1 < chunks.length && !old.has(chunks[j + 1]!.sha256)) j++;
    const before = i > 0 ? old.get(chunks[i - 1]!.sha256)! : null;
    const after = j + 1 < chunks.length ? old.get(chunks[j + 1]!.sha256)! : null;
    const refStart = before ? before.offset + before.size : 0;
    const refEnd = after ? after.offset : oldIndex.size;
    const target = join(scratch, 'run');
    await writeFile(target, await readRange(newFile, chunks[i]!.offset, chunks[j]!.offset + chunks[j]!.size - chunks[i]!.offset));
    const args = ['-q', '-19', '-c'];
    if (refEnd > refStart && refEnd - refStart <= MAX_PATCH_REFERENCE) {
      await writeFile(join(scratch, 'reference'), await readRange(oldFile, refStart, refEnd - refStart));
      args.push(`--patch-from=${join(scratch, 'reference')}`);
    } else {
      alone++;
    }
    bytes += (await runToolBytes('zstd', [...args, target])).length;
    runs++;
    i = j + 1;
  }
  return { bytes, runs, alone };
}

const missing = [];
for (const t of TOOLS) if (!(await onPath(t))) missing.push(t);
if (missing.length > 0) {
  process.stdout.write(`skipped: install ${missing.join(', ')} first (apt-get install -y casync zstd xdelta3 tar)\n`);
  process.exit(0);
}

const work = await mkdtemp(join(process.env.CAIRN_BENCH_DIR ?? tmpdir(), 'cairn-delta-bench-'));
try {
  const releases = await buildTwoReleases(recipeFile, work, { upgrade, log });
  const repo = join(work, 'repo');
  const publish = async (build: string) => JSON.parse(await cairn(['publish', build, '--repo', repo, '--sign-key', releases.signKey, '--json']));
  log('cairn publish (release 1, then release 2)');
  const first = await publish(releases.old.build);
  const published = await publish(releases.new.build);
  const releaseDir = join(repo, published.path);
  log('cairn delta plan');
  const plan = JSON.parse(await cairn(['delta', 'plan', releases.old.build, releaseDir, '--json']));

  const [m1, m2] = [(await readManifest(releases.old.build)).manifest, (await readManifest(releases.new.build)).manifest];
  const images = RELEASE_IMAGES.map((key) => ({
    key,
    file: imageFile(key, m2.name, m2.version),
    label: key === 'uki' ? 'UKI' : imageFile(key, m2.name, m2.version),
    old: join(releases.old.build, imageFile(key, m1.name, m1.version)),
    new: join(releases.new.build, imageFile(key, m2.name, m2.version)),
  }));
  const oldFiles = images.map((i) => i.old);
  const rows = images.map((i) => {
    const p = plan.images.find((x: { image: string }) => x.image === i.file);
    // The verity tree is computed on the host (what the agent does): nothing downloaded.
    const cairn = p.computedOnHost ? 0 : (p.downloadBytes as number);
    return {
      ...i,
      size: p.imageBytes as number,
      cairn,
      full: p.fullBytes as number,
      chunks: p.chunks as number,
      downloadChunks: p.downloadChunks as number,
      patchedChunks: p.patchedChunks as number,
      patchBytes: p.patchBytes as number,
      computed: p.computedOnHost as boolean,
      casync: 0,
      zstd: 0,
      xdelta3: 0,
    };
  });

  log('host side: rebuilding release 2 from release 1 and the downloaded chunks');
  const [rebuilt, rebuildSeconds] = await timed(() =>
    reconstructRelease({ repoDir: repo, releaseDir, publicKey: join(dirname(releases.signKey), 'release.pub.asc'), oldFiles, outDir: join(work, 'host') }),
  );
  for (const r of rebuilt.images) await mustMatch(r.path, join(releases.new.build, r.image), 'cairn reconstruction');
  if (rebuilt.copiedBytes !== plan.total.downloadBytes)
    throw new Error(`copied ${rebuilt.copiedBytes} bytes of chunks, the plan said ${plan.total.downloadBytes}`);

  // casync: a store of the new images, served on loopback; extract counts the chunk bytes sent.
  // (runToolBytes is asynchronous, so the server in this process keeps answering meanwhile.)
  log('casync make / extract');
  const casyncDir = join(work, 'casync');
  await mkdir(casyncDir);
  let served = 0;
  const server = await startStaticServer(casyncDir, '127.0.0.1', 0, (line) => {
    const m = /^GET \/store\/\S+ (\d+) (\d+)$/.exec(line);
    if (m) served += Number(m[2]);
  });
  let casyncMake = 0;
  let casyncExtract = 0;
  let caibxBytes = 0;
  try {
    for (const [n, i] of images.entries()) {
      const caibx = join(casyncDir, `${n}.caibx`);
      casyncMake += (await timed(() => runToolBytes('casync', ['make', `--store=${join(casyncDir, 'store')}`, caibx, i.new])))[1];
      caibxBytes += await size(caibx);
      served = 0;
      const out = join(casyncDir, `${n}.out`);
      casyncExtract += (
        await timed(() => runToolBytes('casync', ['extract', `--store=${server.url}/store/`, ...oldFiles.map((f) => `--seed=${f}`), caibx, out]))
      )[1];
      rows[n]!.casync = served;
      await mustMatch(out, i.new, 'casync extract');
    }
  } finally {
    await server.close();
  }

  log('zstd --patch-from, xdelta3');
  let zstdMake = 0;
  let zstdApply = 0;
  let xdeltaMake = 0;
  let xdeltaApply = 0;
  for (const [n, i] of images.entries()) {
    const biggest = Math.max(await size(i.old), await size(i.new));
    // The window must reach back over the whole old file, or matches are lost.
    const long = `--long=${Math.min(31, Math.max(10, Math.ceil(Math.log2(biggest))))}`;
    const patch = join(work, `${n}.zst`);
    zstdMake += (await timed(() => runToolBytes('zstd', ['-q', '-f', '-19', long, `--patch-from=${i.old}`, i.new, '-o', patch])))[1];
    rows[n]!.zstd = await size(patch);
    zstdApply += (await timed(() => runToolBytes('zstd', ['-q', '-f', '-d', long, `--patch-from=${i.old}`, patch, '-o', `${patch}.out`])))[1];
    await mustMatch(`${patch}.out`, i.new, 'zstd --patch-from');
    // -B: a source window as large as the old file (the default, 64 MiB, misses matches further back).
    const delta = join(work, `${n}.vcdiff`);
    const window = String(2 ** Math.max(24, Math.ceil(Math.log2(biggest))));
    xdeltaMake += (await timed(() => runToolBytes('xdelta3', ['-e', '-f', '-9', '-B', window, '-s', i.old, i.new, delta])))[1];
    rows[n]!.xdelta3 = await size(delta);
    xdeltaApply += (await timed(() => runToolBytes('xdelta3', ['-d', '-f', '-B', window, '-s', i.old, delta, `${delta}.out`])))[1];
    await mustMatch(`${delta}.out`, i.new, 'xdelta3');
  }

  log('goal: what changed in /usr');
  const rootOld = join(releases.old.build, 'rootfs');
  const rootNew = join(releases.new.build, 'rootfs');
  const diff = await changedFiles(join(rootOld, 'usr'), join(rootNew, 'usr'));
  const list = join(work, 'changed.list');
  await writeFile(list, diff.changed.map((p) => `usr/${p}\0`).join(''));
  const changedTar = join(work, 'changed.tar');
  await runToolBytes('tar', ['--null', '--no-recursion', '-C', rootNew, '-cf', changedTar, '-T', list]);
  const goal = (await runToolBytes('zstd', ['-q', '-19', '-c', changedTar])).length;
  const debBytes = releases.changed.reduce((s, c) => s + (c.to?.size ?? 0), 0);

  log('what-ifs: chunk sizes, a fixed verity salt, patches instead of chunks');
  const newFiles = images.map((i) => i.new);
  const sweep: { params: ChunkParams; download: number; full: number; chunks: number }[] = [];
  for (const avg of [8, 16, 32, 64]) {
    const params = { min: (avg / 4) * 1024, avg: avg * 1024, max: avg * 4 * 1024 };
    sweep.push({ params, ...(await downloadWith(params, oldFiles, newFiles, join(work, `sweep-${avg}`))) });
  }
  const salt = Buffer.alloc(32, 7);
  const fixedOld = join(work, 'fixed-salt-old.verity');
  const fixedNew = join(work, 'fixed-salt-new.verity');
  const usr = images.find((i) => i.key === 'usr')!;
  await computeVerity(usr.old, fixedOld, { salt });
  await computeVerity(usr.new, fixedNew, { salt });
  const fixedSalt = await downloadWith(DEFAULT_CHUNK_PARAMS, [fixedOld], [fixedNew], join(work, 'salt-store'));
  const readIndex = async (dir: string, file: string) => validateChunkIndex(unpackJson(await readFile(join(repo, dir, `${file}.chunks.json.br`)), file));
  const patchDir = join(work, 'patches');
  await mkdir(patchDir);
  const patches = new Map<string, { bytes: number; runs: number; alone: number }>();
  for (const i of images) {
    const oldIndex = await readIndex(first.path, imageFile(i.key, m1.name, m1.version));
    patches.set(i.key, await runPatches(oldIndex, await readIndex(published.path, i.file), i.old, i.new, patchDir));
  }
  const patched = [...patches.values()].reduce((s, p) => s + p.bytes, 0);
  const patchedNoVerity = patched - patches.get('verity')!.bytes;
  // What a host fetches to plan: the packed chunk indexes and patch sets of release 2.
  const planFiles = (await readdir(releaseDir)).filter((f) => f.endsWith('.json.br'));
  const cairnIndexes = (await Promise.all(planFiles.map((f) => size(join(releaseDir, f))))).reduce((s, n) => s + n, 0);

  // The report.
  const total = (k: 'size' | 'cairn' | 'full' | 'casync' | 'zstd' | 'xdelta3') => rows.reduce((s, r) => s + r[k], 0);
  const c = total('cairn');
  const out: string[] = [];
  const w = (line = ''): number => out.push(line);
  w(`recipe ${recipeFile}: ${m1.version} → ${m2.version}, ${new Date().toISOString()}`);
  w(
    `release 2 changes: ${releases.changed.map((p) => `${p.name} ${p.from?.version ?? '(new)'} → ${p.to?.version ?? '(removed)'}`).join(', ')}; version ${m1.version} → ${m2.version}`,
  );
  w();
  w('| image | size | cairn delta | full compressed (all chunks) | casync extract --seed | zstd -19 --long --patch-from | xdelta3 -9 |');
  w('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const how = r.computed
      ? 'computed on the host'
      : `${r.downloadChunks} chunks + ${r.patchedChunks} chunks from patches of ${human(r.patchBytes)}, of ${r.chunks}`;
    w(
      `| ${r.label} | ${human(r.size)} | ${human(r.cairn)} (${how}) | ${vs(r.full, r.cairn)} | ${vs(r.casync, r.cairn)} | ${vs(r.zstd, r.cairn)} | ${vs(r.xdelta3, r.cairn)} |`,
    );
  }
  w(
    `| **total** | ${human(total('size'))} | **${human(c)}** | ${vs(total('full'), c)} | ${vs(total('casync'), c)} | ${vs(total('zstd'), c)} | ${vs(total('xdelta3'), c)} |`,
  );
  w(`| + indexes | | ${human(cairnIndexes)} (chunk indexes and patch sets, Brotli) | | ${human(caibxBytes)} (.caibx) | – | – |`);
  w();
  w(
    `goal: ${diff.changed.length} files new or changed in /usr (${diff.removed} removed), ${human(diff.rawBytes)} raw, ${human(goal)} as a zstd -19 tar: cairn downloads ${(c / goal).toFixed(1)}x that`,
  );
  w(`      the upgraded .debs: ${human(debBytes)}: cairn downloads ${(c / debBytes).toFixed(1)}x that`);
  const verityRow = rows.find((r) => r.key === 'verity')!;
  const verityChunks = plan.images.find((x: { image: string }) => x.image === verityRow.file).downloadBytes as number;
  w(`verity: computed on the host; downloading its changed chunks would be ${human(verityChunks)} (with a fixed salt ${human(fixedSalt.download)})`);
  w();
  w('| seconds | make the delta | apply it on the host |');
  w('|---|---:|---:|');
  w(`| cairn (publish release 2 / rebuild from chunks) | ${published.seconds.toFixed(1)} | ${rebuildSeconds.toFixed(1)} |`);
  w(`| casync (make / extract) | ${casyncMake.toFixed(1)} | ${casyncExtract.toFixed(1)} |`);
  w(`| zstd (-19 --patch-from / -d) | ${zstdMake.toFixed(1)} | ${zstdApply.toFixed(1)} |`);
  w(`| xdelta3 (-e -9 / -d) | ${xdeltaMake.toFixed(1)} | ${xdeltaApply.toFixed(1)} |`);
  w();
  w(
    `reconstruction: release 2 rebuilt from release 1 + ${rebuilt.copiedChunks} chunks and ${rebuilt.copiedPatches} patches (${human(rebuilt.copiedBytes)}) copied out of the repository, the verity tree computed: ${rebuilt.images.map((r) => r.image).join(', ')} byte-identical (SHA-256) to the published images`,
  );
  w();
  w('chunks alone, without patches, at other chunk sizes (same chunker, min = avg/4, max = 4 avg; 64 KiB is the default)');
  w('| avg chunk | chunks (3 images) | chunk delta, against cairn with patches | full compressed |');
  w('|---:|---:|---:|---:|');
  for (const s of sweep) w(`| ${s.params.avg / 1024} KiB | ${s.chunks} | ${vs(s.download, c)} | ${human(s.full)} |`);
  w();
  w('for comparison, each run of missing chunks as a zstd -19 --patch-from patch against the old bytes between its unchanged neighbours:');
  for (const i of images) {
    const p = patches.get(i.key)!;
    w(`  ${i.label}: ${human(p.bytes)} for ${p.runs} runs (${p.alone} compressed alone: old range out of order or over ${MAX_PATCH_REFERENCE >> 20} MiB)`);
  }
  w(
    `  without the verity tree: ${vs(patchedNoVerity, c)}, ${(patchedNoVerity / goal).toFixed(1)}x the goal (zstd is not in Node 20: hosts could not apply these)`,
  );
  process.stdout.write(out.join('\n') + '\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
