import type { Argv, CommandModule } from 'yargs';
import { rotateKeys } from '../release/root-keys.js';
import { loadSigningKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, writeSigningKeyPair } from '../trust/signing-key.js';
import { OPTIONS, output } from './options.js';

interface GenerateArgs {
  out: string;
  name: string;
  email?: string;
  json: boolean;
}

async function generateHandler(args: GenerateArgs): Promise<void> {
  const key = await writeSigningKeyPair(args.out, args.name, args.email);
  output(
    args.json,
    key,
    (k) =>
      `fingerprint  ${k.fingerprint}\nprivate key  ${k.privateKey} (keep it secret; signs builds with --sign-key)\npublic key   ${k.publicKey} (give it to verifiers and hosts)\n`,
  );
}

interface RotateArgs {
  repo: string;
  'sign-key': string;
  'new-key': string[];
  json: boolean;
}

async function rotateHandler(args: RotateArgs): Promise<void> {
  const current = await loadSigningKey(args['sign-key']);
  const next = await Promise.all(args['new-key'].map((p) => loadSigningKey(p)));
  const root = await rotateKeys(args.repo, [current], next);
  const report = { serial: root.serial, keys: next.map((k) => k.getFingerprint().toUpperCase()) };
  output(args.json, report, (r) => `root ${r.serial}: hosts now trust ${r.keys.join(', ')}\n`);
}

const generate: CommandModule<object, GenerateArgs> = {
  command: 'generate',
  describe: `Make a release signing key: OUT/${PRIVATE_KEY_FILE} (private, for "cairn build --sign-key") and OUT/${PUBLIC_KEY_FILE} (public, for "cairn verify --key" and hosts' keyrings)`,
  builder: (y) =>
    y
      .option('out', OPTIONS.out)
      .option('name', { type: 'string', default: 'cairn release signing', describe: 'User ID name on the key' })
      .option('email', { type: 'string', describe: 'User ID e-mail on the key' })
      .option('json', OPTIONS.json)
      .example('$0 keys generate --out keys --name "Example Ops"', 'write keys/release.asc and keys/release.pub.asc'),
  handler: generateHandler,
};

const rotate: CommandModule<object, RotateArgs> = {
  command: 'rotate',
  describe:
    'Hand a repository over to new signing keys: writes the next keys/root-N.json.asc, signed by the current key and the new ones; hosts follow it without reconfiguration',
  builder: (y) =>
    y
      .option('repo', OPTIONS.repo)
      .option('sign-key', OPTIONS.signKey)
      .option('new-key', { type: 'string', array: true, demandOption: true, describe: 'Private key(s) to trust from now on (repeat to have several)' })
      .option('json', OPTIONS.json)
      .example('$0 keys rotate --repo repo --sign-key old/release.asc --new-key new/release.asc', 'then sign channels and releases with new/release.asc'),
  handler: rotateHandler,
};

const command: CommandModule<object, object> = {
  command: 'keys <command>',
  describe: 'Manage release signing keys',
  builder: (y: Argv) => y.command(generate).command(rotate).demandCommand(1, 'Name a keys command: see the list above.'),
  handler: () => undefined,
};

export default command;
