import type { Argv, CommandModule } from 'yargs';
import { FetchCache } from '../debian/fetch-cache.js';
import { Progress } from '../debian/progress.js';
import { buildLayer, formatLayerBuild, layerBuildJson } from '../layer/build.js';
import { loadLayerSpec } from '../layer/spec.js';
import { logLine, OPTIONS, output } from './options.js';

interface BuildArgs {
  file: string;
  base?: string;
  out?: string;
  cache?: string;
  json: boolean;
}

async function buildHandler(args: BuildArgs): Promise<void> {
  const spec = await loadLayerSpec(args.file);
  const result = await buildLayer(spec, {
    base: args.base,
    outDir: args.out,
    cache: new FetchCache(args.cache),
    progress: new Progress({ silent: false }),
    log: logLine,
  });
  output(args.json, layerBuildJson(result), () => formatLayerBuild(result));
}

const build: CommandModule<object, BuildArgs> = {
  command: 'build <file>',
  describe:
    'Build an app layer: the packages of LAYER.yaml that its base lacks, as a verified EROFS image for "cairn run --layer". ' +
    "The base's lock decides what counts as present; the layer only mounts over a /usr whose /usr/lib/cairn/cairn.lock has the same SHA-256.",
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Layer file (name, version, base, packages); schema in src/layer/layer.schema.json' })
      .option('base', {
        type: 'string',
        describe:
          "Build for this base instead of the file's: a recipe (its lock; build it first), a build folder, a root or /usr tree with usr/lib/cairn/cairn.lock, or a lockfile",
      })
      .option('out', { type: 'string', describe: 'Folder for <name>_<version>.layer, .verity and layer.json; default images/layers/<name>/<version>' })
      .option('cache', OPTIONS.cache)
      .option('json', OPTIONS.json)
      .example('$0 layer build web.yaml --base recipes/container-host.yaml', 'a layer for the images built from that recipe')
      .example('$0 layer build web.yaml --base images/container-host/0.1.0 --out /tmp/web', 'for an existing build, into /tmp/web'),
  handler: buildHandler,
};

const command: CommandModule<object, object> = {
  command: 'layer <command>',
  describe: "Build app layers: extra Debian packages over a base image's shared /usr",
  builder: (y: Argv) => y.command(build).demandCommand(1, 'Name a layer command: see the list above.'),
  handler: () => undefined,
};

export default command;
