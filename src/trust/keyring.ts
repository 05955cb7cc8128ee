// A keyring is the set of OpenPGP public keys cairn trusts for one purpose (the Debian archive,
// an update channel). Debian ships keyrings as concatenated binary packets (.gpg); operators
// usually hand out ASCII-armored exports (.asc): both are accepted.
import { readFile } from 'node:fs/promises';
import * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';

// Armored keyrings are often several exports pasted together; openpgp reads one block per call.
const ARMOR_BLOCK = /-----BEGIN PGP (PUBLIC|PRIVATE) KEY BLOCK-----[\s\S]*?-----END PGP \1 KEY BLOCK-----/g;

/** Parses keyring bytes; `where` names the source in errors. */
export async function parseKeyring(data: Uint8Array, where: string): Promise<openpgp.PublicKey[]> {
  if (data.length === 0) {
    throw new CairnError(`${where}: the keyring is empty`, 'export the signing keys into it (gpg --export KEYID > FILE)');
  }
  const blocks = Buffer.from(data).toString('latin1').match(ARMOR_BLOCK);
  let keys: openpgp.Key[];
  try {
    keys = blocks ? (await Promise.all(blocks.map((armoredKeys) => openpgp.readKeys({ armoredKeys })))).flat() : await openpgp.readKeys({ binaryKeys: data });
  } catch (err) {
    throw new CairnError(
      `${where}: not an OpenPGP keyring (${(err as Error).message})`,
      'give a binary keyring (gpg --export) or an ASCII-armored public key block (gpg --armor --export)',
    );
  }
  if (keys.length === 0) throw new CairnError(`${where}: the keyring holds no public keys`);
  // A keyring must never carry secrets: it is shared, cached and copied into images.
  const secret = keys.find((k) => k.isPrivate());
  if (secret) {
    throw new CairnError(`${where}: contains the secret key ${keyIdOf(secret)}`, 'export only the public part (gpg --export, not --export-secret-keys)');
  }
  return keys as openpgp.PublicKey[];
}

/** Reads a keyring file (binary or ASCII-armored). */
export async function loadKeyring(path: string): Promise<openpgp.PublicKey[]> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CairnError(
      `${path}: cannot read the keyring (${code === 'ENOENT' ? 'no such file' : (err as Error).message})`,
      'point the recipe (base.keyring) at an existing keyring file',
    );
  }
  return parseKeyring(data, path);
}

/** The long key ID in upper-case hex, as gpg prints it. */
export function keyIdOf(key: openpgp.Key): string {
  return key.getKeyID().toHex().toUpperCase();
}
