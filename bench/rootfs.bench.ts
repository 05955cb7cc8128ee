// Resolve + assemble the default recipe with a warm cache, beside mmdebstrap installing the
// same package set from the same .deb files, in one run. Prints seconds and the ratio.
// Usage: node dist/bench/rootfs.bench.js [RECIPE] (as root; needs network for InRelease).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveLock } from '../src/pipeline/lock.js';
import { buildImage } from '../src/pipeline/build-image.js';
import { sourceDateEpoch } from '../src/debian/lockfile.js';
import { fetchPackages } from '../src/debian/package-downloads.js';
import { FetchCache } from '../src/debian/fetch-cache.js';
import { assembleRoot } from '../src/rootfs/assemble.js';
import { writeTreeTar } from '../src/rootfs/tree-tar.js';
import { loadRecipe } from '../src/recipe/load.js';

const recipeFile = process.argv[2] ?? 'recipes/container-host.yaml';
const recipe = await loadRecipe(recipeFile);
const cache = new FetchCache(process.env.CAIRN_CACHE);
const work = await mkdtemp(join(tmpdir(), 'cairn-bench-'));

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

try {
  // Warm-up: fills the cache so neither side below downloads a package.
  await buildImage(recipe, { stage: 'rootfs', cache, out: join(work, 'warm') });

  let start = process.hrtime.bigint();
  const lock = await resolveLock(recipe, { cache });
  const resolveSeconds = seconds(start);
  // The tree and its tar timed apart: mmdebstrap makes only the tree.
  const fetched = await fetchPackages(cache, lock.origin.mirror, lock.packages);
  start = process.hrtime.bigint();
  await assembleRoot({
    recipe,
    debs: lock.packages.map((pkg) => ({ pkg, path: fetched.paths.get(pkg.sha256)! })),
    outDir: join(work, 'cairn'),
    sourceDateEpoch: sourceDateEpoch(lock),
  });
  const assembleSeconds = seconds(start);
  start = process.hrtime.bigint();
  await writeTreeTar(join(work, 'cairn'), join(work, 'cairn.tar'), sourceDateEpoch(lock));
  const tarSeconds = seconds(start);

  // mmdebstrap gets the same .debs in apt's archive cache, so it downloads indexes only.
  const debs = join(work, 'debs');
  await mkdir(debs);
  for (const p of lock.packages) {
    await symlink(fetched.paths.get(p.sha256)!, join(debs, `${p.name}_${p.version.replace(':', '%3a')}_${p.architecture}.deb`));
  }
  start = process.hrtime.bigint();
  execFileSync(
    'mmdebstrap',
    [
      '--quiet',
      '--mode=root',
      '--variant=custom',
      `--architectures=${lock.origin.architecture}`,
      `--include=${lock.packages.map((p) => `${p.name}=${p.version}`).join(',')}`,
      `--keyring=${recipe.base.keyring}`,
      '--aptopt=APT::Install-Recommends "false"',
      `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp -L ${debs}/*.deb "$1/var/cache/apt/archives/"`,
      lock.origin.suite,
      join(work, 'mmdebstrap'),
      lock.origin.mirror,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const mmdebstrapSeconds = seconds(start);

  const cairnSeconds = resolveSeconds + assembleSeconds;
  const rows = [
    ['tool', 'seconds', 'packages'],
    ['cairn resolve', resolveSeconds.toFixed(2), String(lock.packages.length)],
    ['cairn assemble', assembleSeconds.toFixed(2), String(lock.packages.length)],
    ['cairn total', cairnSeconds.toFixed(2), String(lock.packages.length)],
    ['(rootfs.tar)', tarSeconds.toFixed(2), String(lock.packages.length)],
    ['mmdebstrap', mmdebstrapSeconds.toFixed(2), String(lock.packages.length)],
  ];
  process.stdout.write(`recipe ${recipeFile}, warm cache, ${new Date().toISOString()}\n`);
  for (const row of rows) process.stdout.write(`${row[0]!.padEnd(16)} ${row[1]!.padStart(8)} ${row[2]!.padStart(9)}\n`);
  process.stdout.write(`mmdebstrap / cairn (resolve + tree): ${(mmdebstrapSeconds / cairnSeconds).toFixed(1)}x\n`);
  process.stdout.write(`mmdebstrap / cairn (resolve + tree + reproducible tar): ${(mmdebstrapSeconds / (cairnSeconds + tarSeconds)).toFixed(1)}x\n`);
} finally {
  await rm(work, { recursive: true, force: true });
}
