// Two consecutive releases of a recipe for the delta and publish benchmarks: release 1 is the
// recipe as shipped, release 2 is the recipe changed the way a maintainer would: version bumped,
// and a few packages taken from a newer suite on the same mirror (`base.extra-suites` plus
// `packages: [NAME/SUITE]`, apt's backports idiom). What the archive carries newer than trixie
// for this image is in trixie-backports (docs/deltas.md). Both recipes are locked by cairn, then
// built with `cairn build --frozen`, as a pipeline would.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { resolveLock } from '../src/pipeline/lock.js';
import { FetchCache } from '../src/debian/fetch-cache.js';
import { lockPathFor, writeLockfile, type Lockfile } from '../src/debian/lockfile.js';
import type { LockedPackage } from '../src/debian/types.js';
import { compareVersions } from '../src/debian/version.js';
import { CairnError } from '../src/errors.js';
import { loadRecipe } from '../src/recipe/load.js';
import type { Recipe } from '../src/recipe/types.js';
import { buildImage } from '../src/pipeline/build-image.js';
import { loadSigningKey } from '../src/trust/signing-key.js';

const run = promisify(execFile);
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface UpgradeSpec {
  /** Where the newer versions come from (on the recipe's mirror). */
  suite: string;
  packages: string[];
}

/** What the archive offers today: see docs/deltas.md for how this was found. */
export const DEFAULT_UPGRADE: UpgradeSpec = { suite: 'trixie-backports', packages: ['libelf1t64', 'linux-base'] };

/** `SUITE:PKG[,PKG…]` (a benchmark argument) → an UpgradeSpec; undefined gives the default. */
export function parseUpgrade(text: string | undefined): UpgradeSpec {
  if (text === undefined) return DEFAULT_UPGRADE;
  const m = /^([a-z][a-z0-9-]*):([a-z0-9][a-z0-9+.-]+(?:,[a-z0-9][a-z0-9+.-]+)*)$/.exec(text);
  if (!m) throw new CairnError(`upgrade ${JSON.stringify(text)} is not SUITE:PKG[,PKG…]`, 'e.g. trixie-backports:libelf1t64,linux-base');
  return { suite: m[1]!, packages: m[2]!.split(',') };
}

export interface ChangedPackage {
  name: string;
  from: LockedPackage | null;
  to: LockedPackage | null;
}

export interface Release {
  version: string;
  recipe: string;
  build: string;
  buildSeconds: number;
}

export interface TwoReleases {
  old: Release;
  new: Release;
  /** Every package whose locked version differs between the two releases. */
  changed: ChangedPackage[];
  signKey: string;
  cache: FetchCache;
}

/** Runs the cairn CLI; returns stdout (progress goes to this process's stderr). */
export async function cairn(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, ...args], { maxBuffer: 1 << 26 });
  return stdout;
}

/** 0.1.0 → 0.1.1: the last number of the version, plus one. */
export function nextVersion(version: string): string {
  const m = /^(.*?)(\d+)$/.exec(version);
  if (!m) throw new CairnError(`cannot bump version ${version}: it does not end in a number`);
  return `${m[1]}${Number(m[2]) + 1}`;
}

/**
 * A copy of the recipe text at `file` with its version set and its host paths made absolute, so
 * the copy (and the lock written beside it) can live in a scratch folder.
 */
async function recipeCopy(recipe: Recipe, version: string, upgrade?: UpgradeSpec): Promise<string> {
  const doc = parseDocument(await readFile(recipe.file, 'utf8'));
  doc.set('version', version);
  if (upgrade) {
    // The recipe change a maintainer makes: take these packages from the upgrade suite.
    doc.setIn(['base', 'extra-suites'], [...recipe.base.extraSuites, upgrade.suite]);
    const named = new Set(upgrade.packages);
    doc.set('packages', [...recipe.packages.filter((p) => !named.has(p)), ...upgrade.packages.map((p) => `${p}/${upgrade.suite}`)]);
  }
  if (doc.hasIn(['base', 'keyring'])) doc.setIn(['base', 'keyring'], recipe.base.keyring);
  if (doc.hasIn(['kernel', 'config'])) doc.setIn(['kernel', 'config'], recipe.kernel.config);
  recipe.files.forEach((f, i) => {
    if (f.source !== null) doc.setIn(['files', i, 'source'], f.source);
  });
  return doc.toString();
}

function lockDiff(a: Lockfile, b: Lockfile): ChangedPackage[] {
  const names = [...new Set([...a.packages, ...b.packages].map((p) => p.name))].sort();
  return names
    .map((name) => ({ name, from: a.packages.find((p) => p.name === name) ?? null, to: b.packages.find((p) => p.name === name) ?? null }))
    .filter((c) => c.from?.sha256 !== c.to?.sha256);
}

/** Locks, builds (signed) and returns both releases of `recipeFile` under `work`. */
export async function buildTwoReleases(
  recipeFile: string,
  work: string,
  options: { upgrade?: UpgradeSpec; log?: (line: string) => void } = {},
): Promise<TwoReleases> {
  const log = options.log ?? (() => undefined);
  const upgrade = options.upgrade ?? DEFAULT_UPGRADE;
  const cache = new FetchCache(process.env.CAIRN_CACHE);
  const shipped = await loadRecipe(recipeFile);
  const versions = [shipped.version, nextVersion(shipped.version)];
  const keys = join(work, 'keys');
  await cairn(['keys', 'generate', '--out', keys, '--name', 'cairn bench']);
  const signKey = join(keys, 'release.asc');

  const recipes: Recipe[] = [];
  for (const [i, version] of versions.entries()) {
    const dir = join(work, `recipe-${i + 1}`);
    await mkdir(dir, { recursive: true });
    const file = join(dir, basename(recipeFile));
    await writeFile(file, await recipeCopy(shipped, version, i === 1 ? upgrade : undefined));
    recipes.push(await loadRecipe(file));
  }
  log(
    `locking ${recipes[0]!.name} ${versions[0]} against ${shipped.base.suite}, and ${versions[1]}, whose recipe takes ${upgrade.packages.join(', ')} from ${upgrade.suite}`,
  );
  const [lock1, lock2] = await Promise.all(recipes.map((r) => resolveLock(r, { cache })));
  if (lock1!.origin.inReleaseSha256 !== lock2!.origin.inReleaseSha256) {
    throw new CairnError(`${shipped.base.suite} changed between the two locks`, 'run the benchmark again');
  }
  const changed = lockDiff(lock1!, lock2!);
  for (const name of upgrade.packages) {
    const c = changed.find((p) => p.name === name);
    if (!c?.from || !c.to || compareVersions(c.to.version, c.from.version) <= 0) {
      throw new CairnError(
        `${upgrade.suite} has no version of ${name} newer than the image's`,
        'the archive moved on: pick other packages (see docs/deltas.md)',
      );
    }
  }
  await writeLockfile(lockPathFor(recipes[0]!.file), lock1!);
  await writeLockfile(lockPathFor(recipes[1]!.file), lock2!);

  const releases: Release[] = [];
  for (const recipe of recipes) {
    log(`cairn build ${recipe.file} --frozen`);
    const started = process.hrtime.bigint();
    await buildImage(recipe, { frozen: true, out: join(work, 'images'), signKey: await loadSigningKey(signKey), cache, log });
    releases.push({
      version: recipe.version,
      recipe: recipe.file,
      build: join(work, 'images', recipe.name, recipe.version),
      buildSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    });
  }
  return { old: releases[0]!, new: releases[1]!, changed, signKey, cache };
}
