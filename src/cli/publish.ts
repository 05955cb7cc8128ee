import type { CommandModule } from 'yargs';
import { formatPublishResult, publishRelease } from '../release/publish.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { logLine, OPTIONS, output } from './options.js';

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

async function publishHandler(args: Args): Promise<void> {
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
  output(args.json, { ...result, seconds }, () => formatPublishResult(result, seconds));
}
const command: CommandModule<object, Args> = {
  command: 'publish <build>',
  describe:
    'Add a build to an update repository: its manifest, UKI and the usr and verity images as chunk indexes over the shared chunk store, under a signed release record',
  builder: (y) =>
    y
      .positional('build', OPTIONS.build)
      .option('repo', OPTIONS.repo)
      .option('sign-key', OPTIONS.signKey)
      .option('quality', { type: 'number', describe: 'Brotli quality 0-11 for new chunks (default 5; 11 is ~4% smaller and ~100x slower)' })
      .option('delta-from', { type: 'string', describe: 'Make patches from this published version (default: the release published last)' })
      .option('patches', {
        type: 'boolean',
        default: true,
        describe: 'Make patches from the previous release (--no-patches: hosts download changed chunks whole)',
      })
      .option('json', OPTIONS.json)
      .example(
        '$0 publish images/container-host/0.2.0 --repo repo --sign-key keys/release.asc',
        'adds only the chunks the repository lacks, and patches from the release before',
      ),
  handler: publishHandler,
};

export default command;
