// The release commands on a real signed build of recipes/tiny.yaml: keys generate, verify
// (and what makes it fail), inspect's layout, boot entry and signature status.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const cliPath = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipes = fileURLToPath(new URL('../../../recipes/', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root (the build makes a root file system)';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI and resolves with its outcome, failed or not: the failures are what is tested. */
function cairn(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args], { maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await cairn(...args);
  assert.equal(r.code, 0, `cairn ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

let work: string;
let build: string;
let keys: string;
let fingerprint: string;

before(
  async () => {
    if (skip) return;
    work = await mkdtemp(join(tmpdir(), 'cairn-release-'));
    keys = join(work, 'keys');
    ({ fingerprint } = JSON.parse(await ok('keys', 'generate', '--out', keys, '--name', 'cairn test', '--json')) as { fingerprint: string });
    // Recipe and lock are copied so the build neither re-resolves nor writes beside the shipped recipe.
    // The lock is gitignored: on a fresh clone there is none, and the build writes it here.
    await copyFile(join(recipes, 'tiny.yaml'), join(work, 'tiny.yaml'));
    await ok('build', join(work, 'tiny.yaml'), '--out', join(work, 'out'), '--sign-key', join(keys, 'release.asc'), '--json');
    build = join(work, 'out/tiny/0.1.0');
  },
  { timeout: 300_000 },
);
after(() => (work ? rm(work, { recursive: true, force: true }) : undefined));

/** A copy of the build to damage: links to the big files, real copies of the ones named. */
async function tamperable(name: string, copies: string[]): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  for (const entry of await readdir(build)) {
    if (copies.includes(entry)) await copyFile(join(build, entry), join(dir, entry));
    else await symlink(join(build, entry), join(dir, entry));
  }
  return dir;
}

test('keys generate writes a private key only its owner reads, and never overwrites one', { skip }, async () => {
  const priv = join(keys, 'release.asc');
  assert.equal((await stat(priv)).mode & 0o777, 0o600);
  assert.match(await readFile(priv, 'utf8'), /BEGIN PGP PRIVATE KEY BLOCK/);
  assert.match(await readFile(join(keys, 'release.pub.asc'), 'utf8'), /BEGIN PGP PUBLIC KEY BLOCK/);
  const before = await readFile(priv, 'utf8');
  const again = await cairn('keys', 'generate', '--out', keys);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /release\.asc already exists: refusing to overwrite/);
  assert.equal(await readFile(priv, 'utf8'), before);
});

test('verify accepts the signed build and names its signer', { skip, timeout: 60_000 }, async () => {
  const manifest = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8'));
  const count = Object.keys(manifest.artifacts).length;
  assert.ok(count >= 4, `usr.erofs, usr.verity, the UKI and disk.raw are in the manifest (${count})`);
  const out = await ok('verify', build, '--key', join(keys, 'release.pub.asc'));
  assert.match(out, new RegExp(`^tiny 0\\.1\\.0: ${count} artifacts match$`, 'm'));
  assert.match(fingerprint, /^[0-9A-F]{40}$/);
  assert.match(out, new RegExp(`^signed by ${fingerprint} \\(cairn test\\)$`, 'm'));
});

test('verify fails naming the artifact with one flipped byte', { skip, timeout: 60_000 }, async () => {
  const dir = await tamperable('flipped', ['usr.erofs']);
  const file = await open(join(dir, 'usr.erofs'), 'r+');
  try {
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 5000);
    byte[0]! ^= 0x01;
    await file.write(byte, 0, 1, 5000);
  } finally {
    await file.close();
  }
  const r = await cairn('verify', dir, '--key', join(keys, 'release.pub.asc'));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /1 artifact\(s\) do not match the signed manifest: usr\.erofs\n/);
});

test('verify fails with a key that did not sign the build', { skip }, async () => {
  await ok('keys', 'generate', '--out', join(work, 'other'));
  const r = await cairn('verify', build, '--key', join(work, 'other/release.pub.asc'));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /manifest\.json: signature does not verify with any key/);
});

test('verify and inspect reject an edited manifest.json', { skip }, async () => {
  const dir = await tamperable('edited', ['manifest.json']);
  const text = await readFile(join(dir, 'manifest.json'), 'utf8');
  const edited = text.replace(/"version": "0\.1\.0"/, '"version": "0.1.1"');
  assert.notEqual(edited, text);
  await writeFile(join(dir, 'manifest.json'), edited);
  const r = await cairn('verify', dir, '--key', join(keys, 'release.pub.asc'));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /manifest\.json: the signature by [0-9A-F]{16} .* is invalid/);
  // inspect reports the broken signature instead of failing: it is a fact about the build.
  const report = JSON.parse(await ok('inspect', dir, '--key', join(keys, 'release.pub.asc'), '--json'));
  assert.equal(report.signature.status, 'invalid');
  assert.match(await ok('inspect', dir, '--key', join(keys, 'release.pub.asc')), /^signature +signature does NOT verify/m);
});

test('inspect shows the layout, the boot entry with its counter, the root hash and the signer', { skip, timeout: 60_000 }, async () => {
  const manifest = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8'));
  const report = JSON.parse(await ok('inspect', join(build, 'disk.raw'), '--key', join(keys, 'release.pub.asc'), '--json'));
  assert.deepEqual(
    report.disk.partitions.map((p: { label: string }) => p.label),
    ['esp', 'usr-A', 'usr-A-verity', 'usr-B', 'usr-B-verity', 'root'],
  );
  assert.deepEqual(
    report.disk.partitions.map((p: { typeName: string }) => p.typeName),
    ['esp', 'usr-amd64', 'usr-verity-amd64', 'usr-amd64', 'usr-verity-amd64', 'root-amd64'],
  );
  assert.deepEqual(report.disk.ukis, ['tiny_0.1.0+3.efi']);
  assert.equal(report.rootHash, manifest.usr.rootHash);
  assert.ok(report.kernel.cmdline.includes(`usrhash=${manifest.usr.rootHash}`));
  assert.deepEqual(report.artifacts, manifest.artifacts);
  assert.equal(report.signature.status, 'signed');
  assert.equal(report.signature.signers[0].fingerprint, fingerprint);
  // Slot A's partition UUIDs spell the root hash (DPS), so the layout shown is the real one.
  assert.equal(report.disk.partitions[1].uuid.replaceAll('-', ''), manifest.usr.rootHash.slice(0, 32));

  const text = await ok('inspect', build);
  assert.match(text, /^signature +signed \(not checked/m);
  assert.match(text, /EFI\/Linux\/tiny_0\.1\.0\+3\.efi/);
  assert.match(text, new RegExp(`^root hash +${manifest.usr.rootHash}$`, 'm'));
});

test('inspect refuses a folder that is not a build', { skip }, async () => {
  const r = await cairn('inspect', keys);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /is not a cairn build: .*manifest\.json is missing/);
});
