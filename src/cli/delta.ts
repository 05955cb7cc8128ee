import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { buildChunkIndex, validateChunkIndex, type ChunkIndex } from '../release/chunk-index.js';
import { ChunkStore } from '../release/chunk-store.js';
import { indexLocal, planDelta, type DeltaPlan, type LocalChunks } from '../release/delta-plan.js';
import { unpackJson } from '../document/json-document.js';
import { readManifest } from '../release/manifest.js';
import { checkPatchSet, type PatchSet } from '../release/patch-set.js';
import { imageFile, RELEASE_IMAGES, RELEASE_RECORD_KIND, validateReleaseRecord, type ReleaseImage } from '../release/release-record.js';
import { RELEASE_RECORD } from '../release/repository-layout.js';
import { readSignedJsonUnverified } from '../release/signed-json.js';
import { jsonOption } from './options.js';

interface Args {
  old: string;
  new: string;
  json: boolean;
}

const isFile = (path: string): Promise<boolean> => stat(path).then((s) => s.isFile(), () => false);

/** A build folder's release images, by path. */
async function buildImageFiles(dir: string): Promise<string[]> {
  const { manifest } = await readManifest(dir);
  const files = RELEASE_IMAGES.map((key) => join(dir, imageFile(key, manifest.name, manifest.version)));
  for (const path of files) {
    if (!(await isFile(path))) throw new CairnError(`${dir}: no ${path}`, 'point at a complete build folder');
  }
  return files;
}

/** The new side's chunk indexes (and patch sets): a published release folder's, or made from a build folder's images. */
async function newIndexes(dir: string): Promise<{ key: ReleaseImage; index: ChunkIndex; patches?: PatchSet }[]> {
  const recordPath = join(dir, RELEASE_RECORD);
  if (await isFile(recordPath)) {
    const record = await readSignedJsonUnverified(await readFile(recordPath, 'utf8'), recordPath, validateReleaseRecord, RELEASE_RECORD_KIND);
    return Promise.all(RELEASE_IMAGES.map(async (key) => {
      const indexFile = join(dir, record.images[key].index.path);
      const index = validateChunkIndex(unpackJson(await readFile(indexFile), indexFile));
      const ref = record.images[key].patches;
      const patchFile = ref && join(dir, ref.path);
      return { key, index, patches: patchFile ? checkPatchSet(unpackJson(await readFile(patchFile), patchFile), index, patchFile) : undefined };
    }));
  }
  // A build folder: compress its chunks into a scratch store, only to learn their sizes.
  const scratch = await mkdtemp(join(tmpdir(), 'cairn-delta-'));
  try {
    const store = new ChunkStore(scratch);
    const files = await buildImageFiles(dir);
    return await Promise.all(files.map(async (path, n) => ({ key: RELEASE_IMAGES[n]!, index: await buildChunkIndex(path, store) })));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

const mib = (n: number): string => `${(n / 1048576).toFixed(2)} MiB`;

const plan: CommandModule<object, Args> = {
  command: 'plan <old> <new>',
  describe: 'Say what a host running OLD must download to install NEW: the chunks of NEW it cannot take from its own slot, or the patches that make them from chunks it has',
  builder: (y) =>
    y
      .positional('old', { type: 'string', demandOption: true, describe: 'What the host runs: a build folder (its usr.erofs, usr.verity and UKI)' })
      .positional('new', { type: 'string', demandOption: true, describe: 'What it installs: a published release folder (REPO/<name>/releases/<version>) or a build folder' })
      .option('json', jsonOption)
      .example('$0 delta plan images/container-host/0.1.0 repo/container-host/releases/0.2.0', 'bytes to download against the full image'),
  handler: async (args) => {
    const old = await buildImageFiles(args.old);
    const indexes = await newIndexes(args.new);
    const plans: (DeltaPlan & { computedOnHost: boolean })[] = [];
    // Every old image may hold chunks of every new one; chunk them once per parameter set.
    const local = new Map<string, Promise<LocalChunks>>();
    for (const { key: image, index, patches } of indexes) {
      const key = JSON.stringify(index.params);
      if (!local.has(key)) local.set(key, indexLocal(old.map((path) => ({ path })), index.params));
      // The agent computes the verity tree from the usr image it wrote; it downloads the tree
      // only when that comes out different (it logs verity-download then).
      plans.push({ ...planDelta(index, await local.get(key)!, patches), computedOnHost: image === 'verity' });
    }
    const total = {
      downloadBytes: plans.reduce((s, p) => s + (p.computedOnHost ? 0 : p.totals.downloadBytes), 0),
      fullBytes: plans.reduce((s, p) => s + p.totals.fullBytes, 0),
      imageBytes: plans.reduce((s, p) => s + p.totals.imageBytes, 0),
    };
    if (args.json) {
      process.stdout.write(JSON.stringify({ images: plans.map((p) => ({ image: p.image, computedOnHost: p.computedOnHost, ...p.totals, download: p.download, patches: p.patches })), total }, null, 2) + '\n');
      return;
    }
    for (const p of plans) {
      const t = p.totals;
      if (p.computedOnHost) {
        process.stdout.write(`${p.image.padEnd(10)} computed on the host from usr (${mib(t.imageBytes)}; downloading it would be ${mib(t.downloadBytes)})\n`);
        continue;
      }
      process.stdout.write(
        `${p.image.padEnd(10)} ${t.chunks} chunks (${mib(t.imageBytes)}): reuse ${t.reusedChunks} (${mib(t.reusedBytes)}), ` +
          (t.patchedChunks > 0 ? `patch ${t.patchedChunks} (${mib(t.patchedBytes)}) from ${p.patches.length} patches of ${mib(t.patchBytes)}, ` : '') +
          `download ${mib(t.downloadBytes)} in all, of ${mib(t.fullBytes)} compressed for the whole image\n`,
      );
    }
    const share = total.fullBytes > 0 ? ((100 * total.downloadBytes) / total.fullBytes).toFixed(1) : '0';
    process.stdout.write(`download ${mib(total.downloadBytes)}, ${share}% of the full compressed ${mib(total.fullBytes)}\n`);
  },
};

const command: CommandModule<object, object> = {
  command: 'delta <command>',
  describe: 'Plan delta updates between releases',
  builder: (y: Argv) => y.command(plan).demandCommand(1, 'Name a delta command: see the list above.'),
  handler: () => undefined,
};

export default command;
