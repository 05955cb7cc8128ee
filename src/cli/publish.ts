import type { CommandModule } from 'yargs';
import { publishRelease } from '../release/publish.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { jsonOption, logLine } from './options.js';

interface Args {
  build: string;
  repo: string;
  'sign-key': string;
  quality?: number;
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
      .option('json', jsonOption)
      .example('$0 publish images/container-host/0.2.0 --repo repo --sign-key keys/release.asc', 'adds only the chunks the repository lacks'),
  handler: async (args) => {
    const key = await loadSigningKey(args['sign-key']);
    const started = Date.now();
    const result = await publishRelease({
      buildDir: args.build,
      repoDir: args.repo,
      key,
      quality: args.quality,
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
      process.stdout.write(`${i.file.padEnd(10)} ${mib(i.size)} in ${i.chunks} chunks; new: ${i.addedChunks} chunks, ${mib(i.addedBytes)} compressed (all chunks: ${mib(i.storedBytes)})\n`);
    }
    process.stdout.write(`published ${result.name} ${result.version} as ${result.path} in ${seconds.toFixed(1)} s\n`);
  },
};

export default command;
