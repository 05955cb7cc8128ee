import type * as openpgp from 'openpgp';
import type { CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { verifyBuild } from '../release/manifest.js';
import { loadKeyring } from '../trust/keyring.js';
import { jsonOption } from './options.js';

export interface Signer {
  keyId: string;
  /** The primary key's fingerprint and first user ID, when the key ID is in the keyring. */
  fingerprint?: string;
  userId?: string;
}

/** Turns verified key IDs (possibly of subkeys) into the keys people recognise. */
export function describeSigners(keyIds: string[], keys: openpgp.PublicKey[]): Signer[] {
  return keyIds.map((keyId) => {
    const key = keys.find((k) => k.getKeyIDs().some((id) => id.toHex().toUpperCase() === keyId));
    if (!key) return { keyId };
    return { keyId, fingerprint: key.getFingerprint().toUpperCase(), userId: key.getUserIDs()[0] };
  });
}

export function formatSigner(s: Signer): string {
  return s.fingerprint ? `${s.fingerprint}${s.userId ? ` (${s.userId})` : ''}` : s.keyId;
}

interface Args {
  dir: string;
  key: string;
  json: boolean;
}

const command: CommandModule<object, Args> = {
  command: 'verify <dir>',
  describe: 'Check a build folder: the signature over manifest.json and every artifact against it',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', demandOption: true, describe: 'Build folder, e.g. images/<name>/<version>' })
      .option('key', { type: 'string', demandOption: true, describe: 'Public key or keyring to trust (e.g. release.pub.asc from "cairn keys generate")' })
      .option('json', jsonOption)
      .example('$0 verify images/tiny/0.1.0 --key keys/release.pub.asc', 'exit 0 only if signed by that key and every artifact matches'),
  handler: async (args) => {
    const keys = await loadKeyring(args.key);
    const { manifest, signers, mismatched } = await verifyBuild(args.dir, keys);
    if (mismatched.length > 0) {
      throw new CairnError(
        `${args.dir}: ${mismatched.length} artifact(s) do not match the signed manifest: ${mismatched.join(', ')}`,
        'the files were altered, truncated or are missing after signing; rebuild or fetch the release again',
      );
    }
    const described = describeSigners(signers, keys);
    const count = Object.keys(manifest.artifacts).length;
    if (args.json) {
      process.stdout.write(JSON.stringify({ name: manifest.name, version: manifest.version, signers: described, artifacts: count, rootHash: manifest.usr.rootHash }, null, 2) + '\n');
      return;
    }
    for (const s of described) process.stdout.write(`signed by ${formatSigner(s)}\n`);
    process.stdout.write(`${manifest.name} ${manifest.version}: ${count} artifacts match\n`);
  },
};

export default command;
