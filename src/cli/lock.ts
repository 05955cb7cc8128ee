import type { CommandModule } from 'yargs';
import { FetchCache } from '../debian/fetch-cache.js';
import { lockChanges, lockPathFor, readLockfile, writeLockfile } from '../debian/lockfile.js';
import { resolveLock } from '../pipeline/lock.js';
import { loadRecipe } from '../recipe/load.js';
import { logLine, OPTIONS, output } from './options.js';

interface Args {
  recipe: string;
  cache?: string;
  json: boolean;
}

async function lockHandler(args: Args): Promise<void> {
  const recipe = await loadRecipe(args.recipe);
  const path = lockPathFor(recipe.file);
  const before = await readLockfile(path);
  const lock = await resolveLock(recipe, { cache: new FetchCache(args.cache), log: args.json ? undefined : logLine });
  await writeLockfile(path, lock);
  const { changed, removed } = lockChanges(before, lock);
  output(args.json, { lockfile: path, packages: lock.packages.length, origin: lock.origin, changed, removed }, (r) =>
    [
      ...r.changed.map((p) => `  ${p.from !== null ? '~' : '+'} ${p.name} ${p.from ? `${p.from} → ` : ''}${p.to}\n`),
      ...r.removed.map((name) => `  - ${name}\n`),
      `${path}: ${r.packages} packages from ${r.origin.suite} (InRelease of ${r.origin.date})\n`,
    ].join(''),
  );
}

const command: CommandModule<object, Args> = {
  command: 'lock <recipe>',
  describe: 'Resolve a recipe against its Debian archive and write RECIPE.lock (exact versions and SHA-256s)',
  builder: (y) =>
    y
      .positional('recipe', OPTIONS.recipe)
      .option('cache', OPTIONS.cache)
      .option('json', OPTIONS.json)
      .example('$0 lock recipes/container-host.yaml', 'write recipes/container-host.lock'),
  handler: lockHandler,
};

export default command;
