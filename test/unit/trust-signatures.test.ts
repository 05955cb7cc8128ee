// Keyrings, signatures and the signed InRelease body: the links of the chain of trust that
// need no network.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as openpgp from 'openpgp';
import { parseRelease } from '../../src/debian/release-file.js';
import { keyIdOf, loadKeyring } from '../../src/trust/keyring.js';
import { signCleartext, signDetached, verifyCleartext, verifyDetached } from '../../src/trust/verify.js';
import { cairnError } from '../fixtures/assertions.js';

const SHIPPED_KEYRING = fileURLToPath(new URL('../../../keyrings/debian-archive-keyring.gpg', import.meta.url));

async function newKey(name: string, extra: { date?: Date; keyExpirationTime?: number } = {}): Promise<openpgp.PrivateKey> {
  const { privateKey } = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name }], format: 'object', ...extra });
  return privateKey;
}

let dir: string;
let trusted: openpgp.PrivateKey;
let stranger: openpgp.PrivateKey;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-trust-'));
  [trusted, stranger] = await Promise.all([newKey('trusted'), newKey('stranger')]);
});
after(() => rm(dir, { recursive: true, force: true }));

describe('loadKeyring', () => {
  test('reads the shipped binary Debian keyring', async () => {
    const keys = await loadKeyring(SHIPPED_KEYRING);
    assert.ok(keys.length >= 3, `expected several keys, got ${keys.length}`);
    // The trixie archive signing subkey seen on real InRelease files.
    assert.ok(keys.some((k) => k.getKeyIDs().some((id) => id.toHex() === '6ed0e7b82643e131')));
  });

  test('reads an ASCII-armored keyring with several keys', async () => {
    const path = join(dir, 'armored.asc');
    await writeFile(path, trusted.toPublic().armor() + '\n' + stranger.toPublic().armor());
    const keys = await loadKeyring(path);
    assert.deepEqual(keys.map(keyIdOf).sort(), [keyIdOf(trusted), keyIdOf(stranger)].sort());
  });

  test('rejects a missing, an empty, a non-key and a secret-key file', async () => {
    await assert.rejects(loadKeyring(join(dir, 'absent.gpg')), cairnError(/absent\.gpg: cannot read the keyring \(no such file\)/));
    await writeFile(join(dir, 'empty.gpg'), '');
    await assert.rejects(loadKeyring(join(dir, 'empty.gpg')), cairnError(/empty\.gpg: the keyring is empty/));
    await writeFile(join(dir, 'junk.gpg'), 'this is not a key\n'.repeat(10));
    await assert.rejects(loadKeyring(join(dir, 'junk.gpg')), cairnError(/junk\.gpg: not an OpenPGP keyring/));
    await writeFile(join(dir, 'secret.asc'), trusted.armor());
    await assert.rejects(loadKeyring(join(dir, 'secret.asc')), cairnError(/secret\.asc: contains the secret key [0-9A-F]{16}/));
  });
});

describe('verifyCleartext', () => {
  const text = 'Suite: trixie\nDate: Sat, 09 Aug 2025 09:13:08 UTC\n';

  test('returns exactly the signed text and who signed it', async () => {
    const signed = await signCleartext(text, [trusted]);
    // Text outside the signed block must not leak into the result, nor be accepted before it.
    const result = await verifyCleartext(`${signed}\nTrailer: yes\n`, [trusted.toPublic()], 'InRelease');
    assert.equal(result.data, text);
    assert.deepEqual(result.signers, [keyIdOf(trusted)]);
    await assert.rejects(verifyCleartext(`Injected: yes\n${signed}`, [trusted.toPublic()], 'InRelease'), cairnError(/InRelease: not signed/));
  });

  test('rejects a body changed after signing', async () => {
    const signed = await signCleartext(text, [trusted]);
    const tampered = signed.replace('Suite: trixie', 'Suite: sid');
    assert.notEqual(tampered, signed);
    await assert.rejects(
      verifyCleartext(tampered, [trusted.toPublic()], 'InRelease from http://x/dists/trixie'),
      cairnError(/^InRelease from http:\/\/x\/dists\/trixie: the signature by [0-9A-F]{16} \(a key in the keyring\) is invalid/),
    );
  });

  test('rejects a signature by a key outside the keyring, naming the signer', async () => {
    const signed = await signCleartext(text, [stranger]);
    await assert.rejects(
      verifyCleartext(signed, [trusted.toPublic()], 'InRelease', { keyring: 'keys.gpg' }),
      cairnError(new RegExp(`^InRelease: signature does not verify with any key in keys\\.gpg \\(signed by ${keyIdOf(stranger)}\\)`)),
    );
  });

  test('rejects unsigned and garbled documents', async () => {
    await assert.rejects(verifyCleartext(text, [trusted.toPublic()], 'InRelease'), cairnError(/InRelease: not signed/));
    const signed = await signCleartext(text, [trusted]);
    const garbled = signed.replace(/-----BEGIN PGP SIGNATURE-----[\s\S]*$/, '-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n');
    await assert.rejects(verifyCleartext(garbled, [trusted.toPublic()], 'InRelease'), cairnError(/InRelease: malformed OpenPGP signature/));
  });

  test('one good signature from the keyring suffices; strangers are ignored', async () => {
    const signed = await signCleartext(text, [stranger, trusted]);
    const result = await verifyCleartext(signed, [trusted.toPublic()], 'InRelease');
    assert.deepEqual(result.signers, [keyIdOf(trusted)]);
  });

  test('a bad signature by a trusted key fails the document even beside a good one', async () => {
    const second = await newKey('second');
    const good = await signCleartext(text, [trusted]);
    const other = await signCleartext('Suite: sid\n', [second]);
    // Graft the signature made over other text onto the good document.
    const signatureOf = async (doc: string) =>
      (await openpgp.readSignature({ armoredSignature: doc.slice(doc.indexOf('-----BEGIN PGP SIGNATURE-----')) })).write();
    const both = await openpgp.readSignature({ binarySignature: Buffer.concat([await signatureOf(good), await signatureOf(other)]) });
    const grafted = good.slice(0, good.indexOf('-----BEGIN PGP SIGNATURE-----')) + both.armor();
    const keys = [trusted.toPublic(), second.toPublic()];
    await assert.rejects(verifyCleartext(grafted, keys, 'InRelease'), cairnError(new RegExp(`signature by ${keyIdOf(second)} .* is invalid`)));
    // Without the second key in the keyring the grafted signature is just a stranger's.
    assert.deepEqual((await verifyCleartext(grafted, [trusted.toPublic()], 'InRelease')).signers, [keyIdOf(trusted)]);
  });

  test('rejects signatures by expired and by revoked keys', async () => {
    const created = new Date('2020-01-01T00:00:00Z');
    const expiring = await newKey('expiring', { date: created, keyExpirationTime: 86_400 });
    const signed = await signCleartext(text, [expiring], new Date('2020-01-01T06:00:00Z'));
    // Valid while the key was; not once it has expired.
    assert.equal((await verifyCleartext(signed, [expiring.toPublic()], 'InRelease', { date: new Date('2020-01-01T12:00:00Z') })).signers.length, 1);
    await assert.rejects(verifyCleartext(signed, [expiring.toPublic()], 'InRelease'), cairnError(/does not verify with any key .*unusable.*expired/i));

    const signedByRevoked = await signCleartext(text, [trusted]);
    const { publicKey: revoked } = await openpgp.revokeKey({ key: trusted, format: 'object' });
    await assert.rejects(verifyCleartext(signedByRevoked, [revoked], 'InRelease'), cairnError(/does not verify with any key .*unusable.*revoked/i));
  });
});

describe('detached signatures', () => {
  test('verify over the exact bytes signed', async () => {
    const data = new TextEncoder().encode('{"release":"1.2.3"}');
    const signature = await signDetached(data, [trusted]);
    assert.deepEqual((await verifyDetached(data, signature, [trusted.toPublic()], 'manifest')).signers, [keyIdOf(trusted)]);
    const altered = new TextEncoder().encode('{"release":"1.2.4"}');
    await assert.rejects(verifyDetached(altered, signature, [trusted.toPublic()], 'manifest'), cairnError(/manifest: the signature by .* is invalid/));
    await assert.rejects(verifyDetached(data, signature, [stranger.toPublic()], 'manifest'), cairnError(/manifest: signature does not verify/));
    await assert.rejects(verifyDetached(data, 'not a signature', [trusted.toPublic()], 'manifest'), cairnError(/manifest: malformed OpenPGP signature/));
  });
});

describe('parseRelease', () => {
  const sum = (c: string) => c.repeat(64);
  const release = (extra = '', sha = ` ${sum('a')}  1234 main/binary-amd64/Packages\n ${sum('b')} 321 main/binary-amd64/Packages.xz\n`) =>
    `Origin: Debian\nSuite: stable\nCodename: trixie\nDate: Sat, 09 Aug 2025 09:13:08 UTC\nAcquire-By-Hash: yes\nArchitectures: all amd64 arm64\nComponents: main contrib\n${extra}SHA256:\n${sha}`;
  const now = new Date('2025-08-10T00:00:00Z');
  const where = 'InRelease from http://m/dists/trixie';

  test('reads suite, dates, architectures, components and the SHA256 list', () => {
    const r = parseRelease(release('Valid-Until: Sat, 16 Aug 2025 09:13:08 UTC\n'), where, { now });
    assert.equal(r.suite, 'stable');
    assert.equal(r.codename, 'trixie');
    assert.equal(r.date.toISOString(), '2025-08-09T09:13:08.000Z');
    assert.equal(r.validUntil?.toISOString(), '2025-08-16T09:13:08.000Z');
    assert.deepEqual(r.architectures, ['all', 'amd64', 'arm64']);
    assert.deepEqual(r.components, ['main', 'contrib']);
    assert.equal(r.acquireByHash, true);
    assert.deepEqual(
      [...r.files],
      [
        ['main/binary-amd64/Packages', { size: 1234, sha256: sum('a') }],
        ['main/binary-amd64/Packages.xz', { size: 321, sha256: sum('b') }],
      ],
    );
  });

  test('honours numeric time zones', () => {
    const text = release().replace('09:13:08 UTC', '11:13:08 +0200');
    assert.equal(parseRelease(text, where, { now }).date.toISOString(), '2025-08-09T09:13:08.000Z');
  });

  test('rejects stale, future-dated and undated metadata', () => {
    assert.throws(
      () => parseRelease(release('Valid-Until: Sat, 09 Aug 2025 21:13:08 UTC\n'), where, { now }),
      cairnError(/^InRelease from http:\/\/m\/dists\/trixie: stale metadata: Valid-Until 2025-08-09T21:13:08.000Z has passed/),
    );
    const early = new Date('2025-08-09T08:00:00Z');
    assert.throws(() => parseRelease(release(), where, { now: early }), cairnError(/Date 2025-08-09T09:13:08.000Z is in the future/));
    // Within the clock-skew allowance.
    assert.equal(parseRelease(release(), where, { now: early, maxFutureSkewMs: 2 * 3600_000 }).codename, 'trixie');
    assert.throws(() => parseRelease(release().replace(/^Date: .*\n/m, ''), where, { now }), cairnError(/has no Date field/));
    assert.throws(
      () => parseRelease(release().replace('Sat, 09 Aug', 'Sat, 31 Feb'), where, { now }),
      cairnError(/Date "Sat, 31 Feb 2025 09:13:08 UTC" is not a valid date/),
    );
    assert.throws(
      () => parseRelease(release().replace('Sat, 09 Aug 2025 09:13:08 UTC', 'yesterday'), where, { now }),
      cairnError(/Date "yesterday" is not a date like/),
    );
  });

  test('rejects a missing or malformed SHA256 list', () => {
    assert.throws(() => parseRelease(release().replace(/SHA256:[\s\S]*$/, 'MD5Sum:\n 0123 1 main/x\n'), where, { now }), cairnError(/has no SHA256 file list/));
    assert.throws(() => parseRelease(release('', ` ${sum('a')} 12\n`), where, { now }), cairnError(/malformed SHA256 line/));
    assert.throws(
      () => parseRelease(release('', ` ${sum('a')} 12 ../../etc/passwd\n`), where, { now }),
      cairnError(/"\.\.\/\.\.\/etc\/passwd" is not a plain relative path/),
    );
    assert.throws(() => parseRelease(release('', ` ${sum('a')} 12 /etc/passwd\n`), where, { now }), cairnError(/not a plain relative path/));
    assert.throws(() => parseRelease(release('', ` ${sum('a')} 12 main/P\n ${sum('b')} 13 main/P\n`), where, { now }), cairnError(/lists "main\/P" twice/));
    assert.throws(() => parseRelease(`${release()}\nSuite: other\n`, where, { now }), cairnError(/expected one paragraph of fields, found 2/));
  });
});
