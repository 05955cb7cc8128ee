import type { CommandModule } from 'yargs';
import { FetchCache } from '../debian/fetch-cache.js';
import { Progress } from '../debian/progress.js';
import { DISK_FORMAT_NAMES, type DiskFormat } from '../image/disk-formats.js';
import { buildImage, STAGES, type BuildResult, type Stage } from '../pipeline/build-image.js';
import { loadRecipe } from '../recipe/load.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { logLine, optional, OPTIONS, output } from './options.js';

interface Args {
  recipe: string;
  stage: Stage;
  frozen: boolean;
  cache?: string;
  out: string;
  signKey?: string;
  format: DiskFormat[];
  json: boolean;
}

/** The flat summary `--json` prints (and the text lists): what each stage made. */
function summary(r: BuildResult): Record<string, unknown> {
  return {
    recipe: r.recipe,
    version: r.version,
    lockfile: { path: r.lockfile.path, status: r.lockfile.status },
    ...r.rootfs,
    ...(r.usr ? { usr: r.usr.usr, usrVerity: r.usr.usrVerity, rootHash: r.usr.verity.rootHash } : {}),
    ...(r.boot && r.disk && r.manifest ? { uki: r.boot.uki, disk: r.disk, ...r.converted, manifest: r.manifest.path, signed: r.manifest.signed } : {}),
  };
}

function describe(s: Record<string, unknown>): string {
  return Object.entries(s)
    .filter(([, v]) => typeof v !== 'object')
    .map(([k, v]) => `${k.padEnd(16)} ${String(v)}\n`)
    .join('');
}

async function buildHandler(args: Args): Promise<void> {
  const recipe = await loadRecipe(args.recipe);
  // A bad key should stop the build before minutes of work, not after.
  const signKey = args.signKey ? await loadSigningKey(args.signKey) : null;
  const result = await buildImage(recipe, {
    stage: args.stage,
    frozen: args.frozen,
    cache: new FetchCache(args.cache),
    out: args.out,
    signKey,
    formats: args.format,
    progress: new Progress({ silent: false }),
    log: logLine,
  });
  output(args.json, summary(result), describe);
}

const command: CommandModule<object, Args> = {
  command: 'build <recipe>',
  describe: 'Build a recipe into a bootable A/B disk image and its release artifacts',
  builder: (y) =>
    y
      .positional('recipe', OPTIONS.recipe)
      .option('stage', {
        choices: STAGES,
        default: 'disk' as const,
        describe:
          'Stop after this stage. rootfs: the root tree and a reproducible rootfs.tar; usr: usr.erofs and its dm-verity tree usr.verity; ' +
          'disk: also the UKI, disk.raw and manifest.json',
      })
      .option('frozen', {
        type: 'boolean',
        default: false,
        describe: 'Fail if RECIPE.lock is missing or does not match the recipe, instead of re-resolving it',
      })
      .option('cache', OPTIONS.cache)
      .option('out', { ...optional(OPTIONS.out), default: 'images', describe: 'Output folder; a build goes to OUT/<name>/<version>/' })
      .option('sign-key', optional(OPTIONS.signKey))
      .option('format', {
        choices: DISK_FORMAT_NAMES,
        array: true,
        default: ['raw'] as DiskFormat[],
        describe:
          'Disk formats to write (repeatable): raw (disk.raw, always), qcow2 (QEMU, OpenStack), vmdk (VMware, stream-optimized), vhd (Hyper-V, Azure: fixed size); each in the manifest with its SHA-256',
      })
      .option('json', OPTIONS.json)
      .example('$0 build recipes/container-host.yaml --sign-key keys/release.asc', 'lock, fetch, assemble, and write a signed disk image')
      .example('$0 build recipes/tiny.yaml --frozen --stage rootfs', 'assemble exactly what recipes/tiny.lock says, or fail'),
  handler: buildHandler,
};

export default command;
