import type { CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { verifyBuild } from '../pipeline/manifest.js';
import { loadKeyring } from '../trust/keyring.js';
import { describeSigners, formatSigner } from '../trust/signers.js';
import { OPTIONS, output } from './options.js';

interface Args {
  dir: string;
  key: string;
  json: boolean;
}

async function verifyHandler(args: Args): Promise<void> {
  const keys = await loadKeyring(args.key);
  const { manifest, signers, mismatched } = await verifyBuild(args.dir, keys);
  if (mismatched.length > 0) {
    throw new CairnError(
      `${args.dir}: ${mismatched.length} artifact(s) do not match the signed manifest: ${mismatched.join(', ')}`,
      'the files were altered, truncated or are missing after signing; rebuild or fetch the release again',
    );
  }
  const described = describeSigners(signers, keys);
  const report = {
    name: manifest.name,
    version: manifest.version,
    signers: described,
    artifacts: Object.keys(manifest.artifacts).length,
    rootHash: manifest.usr.rootHash,
  };
  output(
    args.json,
    report,
    (r) => r.signers.map((s) => `signed by ${formatSigner(s)}\n`).join('') + `${r.name} ${r.version}: ${r.artifacts} artifacts match\n`,
  );
}

const command: CommandModule<object, Args> = {
  command: 'verify <dir>',
  describe: 'Check a build folder: the signature over manifest.json and every artifact against it',
  builder: (y) =>
    y
      .positional('dir', OPTIONS.build)
      .option('key', OPTIONS.key)
      .option('json', OPTIONS.json)
      .example('$0 verify images/tiny/0.1.0 --key keys/release.pub.asc', 'exit 0 only if signed by that key and every artifact matches'),
  handler: verifyHandler,
};

export default command;
