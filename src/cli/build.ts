import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { ensureLock } from '../build/lock-recipe.js';
import { buildRootfs, sourceDateEpoch } from '../build/rootfs-stage.js';
import { FetchCache } from '../debian/fetch-cache.js';
import { Progress } from '../debian/progress.js';
import { loadRecipe } from '../recipe/load.js';
import { cacheOption, jsonOption, logLine } from './options.js';

interface Args {
  recipe: string;
  stage: string;
  frozen: boolean;
  cache?: string;
  out: string;
  json: boolean;
}

const command: CommandModule<object, Args> = {
  command: 'build <recipe>',
  describe: 'Build a recipe: lock its packages, fetch them, check the kernel, assemble the root tree',
  builder: (y) =>
    y
      .positional('recipe', { type: 'string', demandOption: true, describe: 'Recipe file, e.g. recipes/container-host.yaml' })
      .option('stage', {
        choices: ['rootfs'],
        default: 'rootfs',
        describe: 'Stop after this stage. rootfs: images/<name>/<version>/rootfs/ and a reproducible rootfs.tar',
      })
      .option('frozen', { type: 'boolean', default: false, describe: 'Fail if RECIPE.lock is missing or does not match the recipe, instead of re-resolving it' })
      .option('cache', cacheOption)
      .option('out', { type: 'string', default: 'images', describe: 'Output folder; a build goes to OUT/<name>/<version>/' })
      .option('json', jsonOption)
      .example('$0 build recipes/container-host.yaml', 'lock (if needed), fetch and assemble the default container host')
      .example('$0 build recipes/tiny.yaml --frozen', 'build exactly what recipes/tiny.lock says, or fail'),
  handler: async (args) => {
    const log = logLine;
    const recipe = await loadRecipe(args.recipe);
    const cache = new FetchCache(args.cache);
    const { lock, path, status } = await ensureLock(recipe, { cache, frozen: args.frozen, log });
    log(`${path}: ${status === 'unchanged' ? 'matches the recipe' : status} (${lock.packages.length} packages)`);
    const outDir = join(args.out, recipe.name, recipe.version);
    const result = await buildRootfs(recipe, lock, {
      cache,
      outDir,
      sourceDateEpoch: sourceDateEpoch(lock),
      progress: new Progress({ silent: false }),
      log,
    });
    if (args.json) {
      process.stdout.write(JSON.stringify({ recipe: recipe.name, version: recipe.version, lockfile: { path, status }, ...result }, null, 2) + '\n');
      return;
    }
    process.stdout.write(
      `${result.rootfs}: ${result.packages} packages, downloaded ${result.downloadedFiles} files (${(result.downloadedBytes / 1048576).toFixed(1)} MiB)\n` +
        `${result.tar}: sha256 ${result.tarSha256}\n`,
    );
  },
};

export default command;
