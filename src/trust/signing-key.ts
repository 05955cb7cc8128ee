// Release signing keys: made by `cairn keys generate`, read by the build to sign manifests.
import { readFile } from 'node:fs/promises';
import * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';

export interface GeneratedKey {
  privateArmored: string;
  publicArmored: string;
  fingerprint: string;
}

export async function generateSigningKey(name: string, email?: string): Promise<GeneratedKey> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name, email }],
    format: 'armored',
  });
  const key = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return { privateArmored: privateKey, publicArmored: publicKey, fingerprint: key.getFingerprint().toUpperCase() };
}

export async function loadSigningKey(path: string): Promise<openpgp.PrivateKey> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CairnError(`cannot read the signing key ${path}: ${(err as Error).message}`, 'make one with "cairn keys generate"');
  }
  try {
    const key = await openpgp.readPrivateKey({ armoredKey: text });
    if (!key.isDecrypted()) throw new Error('it is protected by a passphrase, which cairn does not prompt for');
    return key;
  } catch (err) {
    throw new CairnError(`${path} is not a usable OpenPGP private key: ${(err as Error).message}`, 'pass the private half (key.asc) made by "cairn keys generate"');
  }
}
