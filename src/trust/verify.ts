// Signature checks for everything cairn trusts: the archive's InRelease, and later release
// manifests and channel metadata. The rule: at least one good signature by a key in the
// keyring; signatures by keys we do not hold are ignored (Debian signs with several keys);
// a signature that claims a trusted key but does not verify fails the whole document,
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

function isTrusted(keyID: openpgp.KeyID, keys: openpgp.PublicKey[]): boolean {
  return keys.some((k) => k.getKeys(keyID).length > 0);
}

async function judge(
  signatures: { keyID: openpgp.KeyID; verified: Promise<true> }[],
  keys: openpgp.PublicKey[],
  what: string,
  opts: VerifyOptions,
): Promise<string[]> {
  const keyring = opts.keyring ?? 'the keyring';
  const signers: string[] = [];
  const strangers: string[] = [];
  for (const sig of signatures) {
    const id = sig.keyID.toHex().toUpperCase();
    if (!isTrusted(sig.keyID, keys)) {
      strangers.push(id);
      // openpgp rejects this promise too; it must not surface as an unhandled rejection.
      sig.verified.catch(() => undefined);
      continue;
    }
    try {
      await sig.verified;
    } catch (err) {
      throw new CairnError(
        `${what}: the signature by ${id} (a key in ${keyring}) is invalid: ${(err as Error).message}`,
        'the data was altered after signing, or the key is expired or revoked; do not use this source until it is fixed',
      );
    }
    signers.push(id);
  }
  if (signers.length === 0) {
    throw new CairnError(
      `${what}: signature does not verify with any key in ${keyring} (signed by ${strangers.join(', ') || 'nobody'})`,
      `add the signer's public key to ${keyring} if you trust it`,
    );
  }
  return signers;
}

/** Verifies a cleartext-signed document (an InRelease) and returns its signed text. */
export async function verifyCleartext(
  text: string,
  keys: openpgp.PublicKey[],
  what: string,
  opts: VerifyOptions = {},
): Promise<Verified<string>> {
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
