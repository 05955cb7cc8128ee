import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { generateSigningKey } from '../trust/signing-key.js';
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

const command: CommandModule<object, object> = {
  command: 'keys <command>',
  describe: 'Manage release signing keys',
  builder: (y: Argv) => y.command(generate).demandCommand(1, 'Name a keys command: see the list above.'),
  handler: () => undefined,
};

export default command;
