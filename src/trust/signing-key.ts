// Release signing keys: made by `cairn keys generate`, read by the build to sign manifests.
import { constants } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

export const PRIVATE_KEY_FILE = 'release.asc';
export const PUBLIC_KEY_FILE = 'release.pub.asc';

export interface WrittenKey {
  fingerprint: string;
  privateKey: string;
  publicKey: string;
}

/** Generates a key pair into `dir` (made if missing); never replaces a key already there. */
export async function writeSigningKeyPair(dir: string, name: string, email?: string): Promise<WrittenKey> {
  const privatePath = join(dir, PRIVATE_KEY_FILE);
  const publicPath = join(dir, PUBLIC_KEY_FILE);
  // Both are checked before either is written: a half-replaced pair would sign with one key
  // and hand out another.
  for (const path of [privatePath, publicPath]) {
    if (
      await access(path, constants.F_OK).then(
        () => true,
        () => false,
      )
    ) {
      throw new CairnError(
        `${path} already exists: refusing to overwrite a signing key`,
        'choose another --out folder, or move the old key away first if you really mean to replace it',
      );
    }
  }
  const key = await generateSigningKey(name, email);
  await mkdir(dir, { recursive: true });
  // 'wx' keeps the no-overwrite promise even against a file that appeared since the check.
  await writeFile(privatePath, key.privateArmored, { flag: 'wx', mode: 0o600 });
  await writeFile(publicPath, key.publicArmored, { flag: 'wx', mode: 0o644 });
  return { fingerprint: key.fingerprint, privateKey: privatePath, publicKey: publicPath };
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
    throw new CairnError(
      `${path} is not a usable OpenPGP private key: ${(err as Error).message}`,
      'pass the private half (key.asc) made by "cairn keys generate"',
    );
  }
}
