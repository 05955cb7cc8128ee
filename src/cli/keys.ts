import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { rotateKeys } from '../release/root-keys.js';
import { generateSigningKey, loadSigningKey } from '../trust/signing-key.js';
import { jsonOption } from './options.js';

export const PRIVATE_KEY_FILE = 'release.asc';
export const PUBLIC_KEY_FILE = 'release.pub.asc';

interface GenerateArgs {
  out: string;
  name: string;
  email?: string;
  json: boolean;
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(() => true, () => false);
}

const generate: CommandModule<object, GenerateArgs> = {
  command: 'generate',
  describe: `Make a release signing key: OUT/${PRIVATE_KEY_FILE} (private, for "cairn build --sign-key") and OUT/${PUBLIC_KEY_FILE} (public, for "cairn verify --key" and hosts' keyrings)`,
  builder: (y) =>
    y
      .option('out', { type: 'string', demandOption: true, describe: 'Folder for the key files (made if missing)' })
      .option('name', { type: 'string', default: 'cairn release signing', describe: 'User ID name on the key' })
      .option('email', { type: 'string', describe: 'User ID e-mail on the key' })
      .option('json', jsonOption)
      .example('$0 keys generate --out keys --name "Example Ops"', 'write keys/release.asc and keys/release.pub.asc'),
  handler: async (args) => {
    const privatePath = join(args.out, PRIVATE_KEY_FILE);
    const publicPath = join(args.out, PUBLIC_KEY_FILE);
    // Both are checked before either is written: a half-replaced pair would sign with one key
    // and hand out another.
    for (const path of [privatePath, publicPath]) {
      if (await exists(path)) {
        throw new CairnError(`${path} already exists: refusing to overwrite a signing key`, 'choose another --out folder, or move the old key away first if you really mean to replace it');
      }
    }
    const key = await generateSigningKey(args.name, args.email);
    await mkdir(args.out, { recursive: true });
    // 'wx' keeps the no-overwrite promise even against a file that appeared since the check.
    await writeFile(privatePath, key.privateArmored, { flag: 'wx', mode: 0o600 });
    await writeFile(publicPath, key.publicArmored, { flag: 'wx', mode: 0o644 });
    if (args.json) {
      process.stdout.write(JSON.stringify({ fingerprint: key.fingerprint, privateKey: privatePath, publicKey: publicPath }, null, 2) + '\n');
      return;
    }
    process.stdout.write(`fingerprint  ${key.fingerprint}\nprivate key  ${privatePath} (keep it secret; signs builds with --sign-key)\npublic key   ${publicPath} (give it to verifiers and hosts)\n`);
  },
};

interface RotateArgs {
  repo: string;
  'sign-key': string;
  'new-key': string[];
  json: boolean;
}

const rotate: CommandModule<object, RotateArgs> = {
  command: 'rotate',
  describe: 'Hand a repository over to new signing keys: writes the next keys/root-N.json.asc, signed by the current key and the new ones; hosts follow it without reconfiguration',
  builder: (y) =>
    y
      .option('repo', { type: 'string', demandOption: true, describe: 'Repository folder' })
      .option('sign-key', { type: 'string', demandOption: true, describe: 'Current private key (one hosts trust now)' })
      .option('new-key', { type: 'string', array: true, demandOption: true, describe: 'Private key(s) to trust from now on (repeat to have several)' })
      .option('json', jsonOption)
      .example('$0 keys rotate --repo repo --sign-key old/release.asc --new-key new/release.asc', 'then sign channels and releases with new/release.asc'),
  handler: async (args) => {
    const current = await loadSigningKey(args['sign-key']);
    const next = await Promise.all(args['new-key'].map((p) => loadSigningKey(p)));
    const root = await rotateKeys(args.repo, [current], next);
    if (args.json) {
      process.stdout.write(JSON.stringify({ serial: root.serial, keys: next.map((k) => k.getFingerprint().toUpperCase()) }, null, 2) + '\n');
      return;
    }
    process.stdout.write(`root ${root.serial}: hosts now trust ${next.map((k) => k.getFingerprint().toUpperCase()).join(', ')}\n`);
  },
};

const command: CommandModule<object, object> = {
  command: 'keys <command>',
  describe: 'Manage release signing keys',
  builder: (y: Argv) => y.command(generate).command(rotate).demandCommand(1, 'Name a keys command: see the list above.'),
  handler: () => undefined,
};

export default command;
