import type { CommandModule } from 'yargs';
import { publishRelease } from '../release/publish.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { jsonOption, logLine } from './options.js';

interface Args {
  build: string;
  repo: string;
  'sign-key': string;
  quality?: number;
  'delta-from'?: string;
  patches: boolean;
  json: boolean;
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

const command: CommandModule<object, Args> = {
  command: 'publish <build>',
  describe: 'Add a build to an update repository: its manifest, UKI and the usr and verity images as chunk indexes over the shared chunk store, under a signed release record',
  builder: (y) =>
    y
      .positional('build', { type: 'string', demandOption: true, describe: 'Build folder, e.g. images/<name>/<version>' })
      .option('repo', { type: 'string', demandOption: true, describe: 'Repository folder (made if missing); serve it with any static HTTP server' })
      .option('sign-key', { type: 'string', demandOption: true, describe: 'Private key that signs the release record (one of the repository keys hosts trust)' })
      .option('quality', { type: 'number', describe: 'Brotli quality 0-11 for new chunks (default 5; 11 is ~4% smaller and ~100x slower)' })
      .option('delta-from', { type: 'string', describe: 'Make patches from this published version (default: the release published last)' })
      .option('patches', { type: 'boolean', default: true, describe: 'Make patches from the previous release (--no-patches: hosts download changed chunks whole)' })
      .option('json', jsonOption)
      .example('$0 publish images/container-host/0.2.0 --repo repo --sign-key keys/release.asc', 'adds only the chunks the repository lacks, and patches from the release before'),
  handler: async (args) => {
    const key = await loadSigningKey(args['sign-key']);
    const started = Date.now();
    const result = await publishRelease({
      buildDir: args.build,
      repoDir: args.repo,
      key,
      quality: args.quality,
      deltaFrom: args.patches ? args['delta-from'] : false,
      onImage: (file, size) => logLine(`chunking ${file} (${mib(size)})`),
    });
    const seconds = (Date.now() - started) / 1000;
    if (args.json) {
      process.stdout.write(JSON.stringify({ ...result, seconds }, null, 2) + '\n');
      return;
    }
    if (result.alreadyPublished) {
      process.stdout.write(`${result.name} ${result.version} is already published from this build (${result.path}); nothing changed\n`);
      return;
    }
    for (const i of result.images) {
      const patches = i.patches ? `; ${i.patches.count} patches from ${i.patches.from}: ${mib(i.patches.bytes)} instead of ${mib(i.patches.replacedBytes)} of chunks` : '';
      process.stdout.write(`${i.file.padEnd(10)} ${mib(i.size)} in ${i.chunks} chunks; new: ${i.addedChunks} chunks, ${mib(i.addedBytes)} compressed (all chunks: ${mib(i.storedBytes)})${patches}\n`);
    }
    process.stdout.write(`published ${result.name} ${result.version} as ${result.path} in ${seconds.toFixed(1)} s\n`);
  },
};

export default command;
