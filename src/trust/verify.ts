// Signature checks for everything cairn trusts: the archive's InRelease, and later release
// manifests and channel metadata. The rule, as apt applies it: at least one good signature by
// a usable key in the keyring. Signatures by keys we do not hold, or by keys that have expired
// or been revoked, count for nothing (Debian signs with several keys and rotates them); a
// signature that claims a usable trusted key but does not verify fails the whole document,
// since that is what tampering looks like.
import * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';

export interface VerifyOptions {
  /** Names the keyring in errors (its path). */
  keyring?: string;
  /** Time to judge key expiry and revocation at (default: now). */
  date?: Date;
}

export interface Verified<T> {
  /** Only the signed content: anything outside the signature is never returned. */
  data: T;
  /** Long key IDs (upper-case hex) of the keys whose signatures verified. */
  signers: string[];
}

const CLEARTEXT_HEADER = '-----BEGIN PGP SIGNED MESSAGE-----';

async function judge(
  signatures: { keyID: openpgp.KeyID; verified: Promise<true> }[],
  keys: openpgp.PublicKey[],
  what: string,
  opts: VerifyOptions,
): Promise<string[]> {
  const keyring = opts.keyring ?? 'the keyring';
  const signers: string[] = [];
  const ignored: string[] = [];
  for (const sig of signatures) {
    const id = sig.keyID.toHex().toUpperCase();
    // openpgp rejects this promise for keys it cannot use; only awaited ones may reject unhandled.
    sig.verified.catch(() => undefined);
    const key = keys.find((k) => k.getKeys(sig.keyID).length > 0);
    if (!key) {
      ignored.push(id);
      continue;
    }
    try {
      await key.getSigningKey(sig.keyID, opts.date ?? new Date());
    } catch (err) {
      ignored.push(`${id}, whose key is unusable: ${(err as Error).message}`);
      continue;
    }
    try {
      await sig.verified;
    } catch (err) {
      throw new CairnError(
        `${what}: the signature by ${id} (a key in ${keyring}) is invalid: ${(err as Error).message}`,
        'the data was altered after signing; do not use this source until it is fixed',
      );
    }
    signers.push(id);
  }
  if (signers.length === 0) {
    throw new CairnError(
      `${what}: signature does not verify with any key in ${keyring} (signed by ${ignored.join('; ') || 'nobody'})`,
      `add the signer's current public key to ${keyring} if you trust it`,
    );
  }
  return signers;
}

/** Verifies a cleartext-signed document (an InRelease) and returns its signed text. */
export async function verifyCleartext(text: string, keys: openpgp.PublicKey[], what: string, opts: VerifyOptions = {}): Promise<Verified<string>> {
  if (!text.trimStart().startsWith(CLEARTEXT_HEADER)) {
    throw new CairnError(`${what}: not signed (no "${CLEARTEXT_HEADER}" header)`, 'cairn accepts only signed metadata');
  }
  let message: openpgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: text });
  } catch (err) {
    throw new CairnError(`${what}: malformed OpenPGP signature (${(err as Error).message})`);
  }
  const result = await openpgp.verify({ message, verificationKeys: keys, date: opts.date });
  return { data: result.data, signers: await judge(result.signatures, keys, what, opts) };
}

/** Verifies an ASCII-armored detached signature over `data`. */
export async function verifyDetached(
  data: Uint8Array,
  armoredSignature: string,
  keys: openpgp.PublicKey[],
  what: string,
  opts: VerifyOptions = {},
): Promise<Verified<Uint8Array>> {
  let signature: openpgp.Signature;
  try {
    signature = await openpgp.readSignature({ armoredSignature });
  } catch (err) {
    throw new CairnError(`${what}: malformed OpenPGP signature (${(err as Error).message})`);
  }
  const message = await openpgp.createMessage({ binary: data });
  const result = await openpgp.verify({ message, signature, verificationKeys: keys, format: 'binary', date: opts.date });
  return { data, signers: await judge(result.signatures, keys, what, opts) };
}

/** Signs text as a cleartext document (how Debian signs InRelease). */
export async function signCleartext(text: string, signingKeys: openpgp.PrivateKey[], date?: Date): Promise<string> {
  const message = await openpgp.createCleartextMessage({ text });
  return openpgp.sign({ message, signingKeys, date });
}

/** Makes an ASCII-armored detached signature over `data`. */
export async function signDetached(data: Uint8Array, signingKeys: openpgp.PrivateKey[], date?: Date): Promise<string> {
  const message = await openpgp.createMessage({ binary: data });
  return openpgp.sign({ message, signingKeys, detached: true, date });
}
