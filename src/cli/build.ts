import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { buildBoot, buildDiskImage, buildUsr } from '../build/image-stage.js';
import { ensureLock } from '../build/lock-recipe.js';
import { buildRootfs, sourceDateEpoch } from '../build/rootfs-stage.js';
import { FetchCache } from '../debian/fetch-cache.js';
import { Progress } from '../debian/progress.js';
import { loadRecipe } from '../recipe/load.js';
import { artifactEntries, writeManifest, type Manifest } from '../release/manifest.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { createHash } from 'node:crypto';
import { cacheOption, jsonOption, logLine } from './options.js';
import { FORMATS } from '../document/formats.js';

const STAGES = ['rootfs', 'usr', 'disk'] as const;

interface Args {
  recipe: string;
  stage: (typeof STAGES)[number];
  frozen: boolean;
  cache?: string;
  out: string;
  signKey?: string;
  json: boolean;
}

const command: CommandModule<object, Args> = {
  command: 'build <recipe>',
  describe: 'Build a recipe into a bootable A/B disk image and its release artifacts',
  builder: (y) =>
    y
      .positional('recipe', { type: 'string', demandOption: true, describe: 'Recipe file, e.g. recipes/container-host.yaml' })
      .option('stage', {
        choices: STAGES,
        default: 'disk' as const,
        describe:
          'Stop after this stage. rootfs: the root tree and a reproducible rootfs.tar; usr: usr.erofs and its dm-verity tree usr.verity; ' +
          'disk: also the UKI, disk.raw and manifest.json',
      })
      .option('frozen', { type: 'boolean', default: false, describe: 'Fail if RECIPE.lock is missing or does not match the recipe, instead of re-resolving it' })
      .option('cache', cacheOption)
      .option('out', { type: 'string', default: 'images', describe: 'Output folder; a build goes to OUT/<name>/<version>/' })
      .option('sign-key', { type: 'string', describe: 'OpenPGP private key (from "cairn keys generate") that signs manifest.json' })
      .option('json', jsonOption)
      .example('$0 build recipes/container-host.yaml --sign-key keys/release.asc', 'lock, fetch, assemble, and write a signed disk image')
      .example('$0 build recipes/tiny.yaml --frozen --stage rootfs', 'assemble exactly what recipes/tiny.lock says, or fail'),
  handler: async (args) => {
    const log = logLine;
    const recipe = await loadRecipe(args.recipe);
    // A bad key should stop the build before minutes of work, not after.
    const key = args.signKey ? await loadSigningKey(args.signKey) : null;
    const cache = new FetchCache(args.cache);
    const { lock, path: lockPath, status } = await ensureLock(recipe, { cache, frozen: args.frozen, log });
    log(`${lockPath}: ${status === 'unchanged' ? 'matches the recipe' : status} (${lock.packages.length} packages)`);
    const outDir = join(args.out, recipe.name, recipe.version);
    const epoch = sourceDateEpoch(lock);
    const rootfs = await buildRootfs(recipe, lock, { cache, outDir, sourceDateEpoch: epoch, progress: new Progress({ silent: false }), log });
    const summary: Record<string, unknown> = { recipe: recipe.name, version: recipe.version, lockfile: { path: lockPath, status }, ...rootfs };
    if (args.stage !== 'rootfs') {
      log('making usr.erofs and its verity tree');
      const usr = await buildUsr(recipe, rootfs.rootfs, outDir, epoch);
      Object.assign(summary, { usr: usr.usr, usrVerity: usr.usrVerity, rootHash: usr.verity.rootHash });
      if (args.stage === 'disk') {
        log('making the initramfs and the UKI');
        const boot = await buildBoot(recipe, rootfs.rootfs, outDir, usr.verity.rootHash, epoch);
        log('making the ESP, the root file system and disk.raw');
        const disk = await buildDiskImage(recipe, rootfs.rootfs, outDir, usr, boot, epoch);
        const manifest: Manifest = {
          format: FORMATS.manifest,
          name: recipe.name,
          version: recipe.version,
          architecture: recipe.base.architecture,
          lockfileSha256: createHash('sha256').update(await readFile(lockPath)).digest('hex'),
          sourceDateEpoch: epoch,
          usr: { rootHash: usr.verity.rootHash, salt: usr.verity.salt, dataBlocks: usr.verity.dataBlocks },
          kernel: { version: boot.kernelVersion, cmdline: boot.cmdline },
          artifacts: await artifactEntries([usr.usr, usr.usrVerity, boot.uki, disk]),
        };
        await writeManifest(outDir, manifest, key);
        Object.assign(summary, { uki: boot.uki, disk, manifest: join(outDir, 'manifest.json'), signed: key !== null });
      }
    }
    if (args.json) {
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      return;
    }
    for (const [k, v] of Object.entries(summary)) if (typeof v !== 'object') process.stdout.write(`${k.padEnd(16)} ${String(v)}\n`);
  },
};

export default command;
