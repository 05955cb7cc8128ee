// Which keys sign a repository, and how that changes. A host starts from the keys it was
// configured with; `keys/root-N.json.asc` names the keys from serial N on and must be signed
// both by a key trusted at N-1 (the old keys vouch for the new) and by a key it names (its
// holder has the private half). A host walks the chain N = seen+1, seen+2, … until one is
// missing, so a stolen old key cannot bring back a retired root and a new key needs no
// reconfiguration of the fleet.
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { parseKeyring } from '../trust/keyring.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { compileSchema } from '../document/schema.js';
import { rootPath } from './repository-layout.js';
import schema from './root.schema.json' with { type: 'json' };
import { signJson, verifyJson } from './signed-json.js';
import { FORMATS } from '../document/formats.js';

export interface RootDoc {
  format: typeof FORMATS.root;
  serial: number;
  issued: string;
  /** ASCII-armored public keys. */
  keys: string[];
}

export const ROOT_KIND = 'a cairn root of trust';
export const validateRoot: ValidateFunction<RootDoc> = compileSchema<RootDoc>(schema);

export async function rootKeys(root: RootDoc, where: string): Promise<openpgp.PublicKey[]> {
  return (await Promise.all(root.keys.map((k, i) => parseKeyring(Buffer.from(k), `${where} key ${i + 1}`)))).flat();
}

/** Signs the next root with the current keys and the new ones. */
export async function signRoot(root: RootDoc, current: openpgp.PrivateKey[], next: openpgp.PrivateKey[], date?: Date): Promise<string> {
  return signJson(root, [...current, ...next], date);
}

/**
 * Verifies root `serial` against the keys trusted at `serial - 1`: signed by one of them and by
 * one of the keys it introduces. Returns the document and its keys.
 */
export async function verifyRoot(
  text: string,
  serial: number,
  trusted: openpgp.PublicKey[],
  where: string,
  date?: Date,
): Promise<{ root: RootDoc; keys: openpgp.PublicKey[] }> {
  const { data: root } = await verifyJson(text, trusted, where, validateRoot, ROOT_KIND, { date, keyring: 'the keys trusted so far' });
  if (root.serial !== serial) throw new CairnError(`${where}: says it is root ${root.serial}, expected ${serial}`, 'the repository is broken or hostile');
  const keys = await rootKeys(root, where);
  await verifyJson(text, keys, where, validateRoot, ROOT_KIND, { date, keyring: 'the keys it introduces' });
  return { root, keys };
}

/** The highest root serial in a repository on disk (0: none yet, the keys hosts were given rule). */
export async function latestRootSerial(repoDir: string): Promise<number> {
  const files = await readdir(join(repoDir, 'keys')).catch(() => [] as string[]);
  return Math.max(
    0,
    ...files
      .map((f) => /^root-(\d+)\.json\.asc$/.exec(f))
      .filter((m) => m !== null)
      .map((m) => Number(m[1])),
  );
}

/** Writes the next root naming `next` as the repository's keys, vouched for by `current`. */
export async function rotateKeys(repoDir: string, current: openpgp.PrivateKey[], next: openpgp.PrivateKey[], now = new Date()): Promise<RootDoc> {
  const serial = (await latestRootSerial(repoDir)) + 1;
  const root: RootDoc = { format: FORMATS.root, serial, issued: now.toISOString(), keys: next.map((k) => k.toPublic().armor()) };
  await mkdir(join(repoDir, 'keys'), { recursive: true });
  await writeFileAtomic(join(repoDir, rootPath(serial)), await signRoot(root, current, next, now));
  return root;
}
