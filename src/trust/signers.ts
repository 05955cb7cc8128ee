// Who signed something, as people recognise keys: verified key IDs (possibly of subkeys) turned
// into the primary key's fingerprint and first user ID.
import type * as openpgp from 'openpgp';

export interface Signer {
  keyId: string;
  /** The primary key's fingerprint and first user ID, when the key ID is in the keyring. */
  fingerprint?: string;
  userId?: string;
}

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
