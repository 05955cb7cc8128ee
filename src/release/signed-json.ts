// Repository metadata (release records, channels, key rotations) is JSON inside an OpenPGP
// cleartext signature: one file per document, so a reader racing a writer sees the old document
// or the new one whole, never a new body with an old signature.
import * as openpgp from 'openpgp';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { signCleartext, verifyCleartext, type VerifyOptions } from '../trust/verify.js';
import { formatJson, parseJsonDocument } from '../document/json-document.js';

/** Metadata documents are small; a server sending more is refused before parsing. */
export const MAX_METADATA_BYTES = 1 << 20;

export async function signJson(data: unknown, keys: openpgp.PrivateKey[], date?: Date): Promise<string> {
  return signCleartext(formatJson(data), keys, date);
}

export interface VerifiedJson<T> {
  data: T;
  signers: string[];
}

/** Checks the signature against `keys`, then the JSON against its schema. */
export async function verifyJson<T>(
  text: string,
  keys: openpgp.PublicKey[],
  where: string,
  validate: ValidateFunction<T>,
  what: string,
  opts: VerifyOptions = {},
): Promise<VerifiedJson<T>> {
  if (text.length > MAX_METADATA_BYTES) throw new CairnError(`${where}: ${text.length} bytes is too big for ${what}`, 'the server is broken or hostile');
  const { data, signers } = await verifyCleartext(text, keys, where, opts);
  return { data: parseJsonDocument(data, where, validate, what, MAX_METADATA_BYTES), signers };
}

/**
 * Reads the JSON of a signed document without checking the signature: only for the operator's
 * own repository on local disk, which fleet commands rewrite and re-sign.
 */
export async function readSignedJsonUnverified<T>(text: string, where: string, validate: ValidateFunction<T>, what: string): Promise<T> {
  let message: openpgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: text });
  } catch (err) {
    throw new CairnError(`${where}: not a signed document (${(err as Error).message})`);
  }
  return parseJsonDocument(message.getText(), where, validate, what, MAX_METADATA_BYTES);
}
