import type { CommandModule } from 'yargs';
import { resolveLock } from '../build/lock-recipe.js';
import { FetchCache } from '../debian/fetch-cache.js';
import { lockPathFor, readLockfile, writeLockfile } from '../debian/lockfile.js';
import { loadRecipe } from '../recipe/load.js';
import { cacheOption, jsonOption, logLine } from './options.js';

interface Args {
  recipe: string;
  cache?: string;
  json: boolean;
}

const command: CommandModule<object, Args> = {
  command: 'lock <recipe>',
  describe: 'Resolve a recipe against its Debian archive and write RECIPE.lock (exact versions and SHA-256s)',
  builder: (y) =>
    y
      .positional('recipe', { type: 'string', demandOption: true, describe: 'Recipe file, e.g. recipes/container-host.yaml' })
      .option('cache', cacheOption)
      .option('json', jsonOption)
      .example('$0 lock recipes/container-host.yaml', 'write recipes/container-host.lock'),
  handler: async (args) => {
    const recipe = await loadRecipe(args.recipe);
    const path = lockPathFor(recipe.file);
    const before = await readLockfile(path);
    const lock = await resolveLock(recipe, { cache: new FetchCache(args.cache), log: args.json ? undefined : logLine });
    await writeLockfile(path, lock);
    const previous = new Map(before?.packages.map((p) => [p.name, p.version]) ?? []);
    const changed = lock.packages.filter((p) => previous.get(p.name) !== p.version);
    const removed = [...previous.keys()].filter((name) => !lock.packages.some((p) => p.name === name));
    if (args.json) {
      process.stdout.write(JSON.stringify({ lockfile: path, packages: lock.packages.length, origin: lock.origin, changed: changed.map((p) => ({ name: p.name, from: previous.get(p.name) ?? null, to: p.version })), removed }, null, 2) + '\n');
      return;
    }
    for (const p of changed) process.stdout.write(`  ${previous.has(p.name) ? '~' : '+'} ${p.name} ${previous.get(p.name) ? `${previous.get(p.name)} → ` : ''}${p.version}\n`);
    for (const name of removed) process.stdout.write(`  - ${name}\n`);
    process.stdout.write(`${path}: ${lock.packages.length} packages from ${lock.origin.suite} (InRelease of ${lock.origin.date})\n`);
  },
};

export default command;
