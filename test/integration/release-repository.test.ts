// The update repository end to end on loopback: publish two releases that differ in a few
// files (real EROFS images), run the fleet commands, and have a host-side client follow the
// channel, plan the delta against the old images and rebuild the new ones from its own chunks
// plus the downloaded ones, byte for byte. Also key rotation as a host sees it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type * as openpgp from 'openpgp';
import { CairnError } from '../../src/errors.js';
import { sha256File } from '../../src/hash-file.js';
import { pin, promote, revoke } from '../../src/release/channel-ops.js';
import { reassemble } from '../../src/release/chunk-index.js';
import { DeltaSource, indexLocal, planDelta } from '../../src/release/delta-plan.js';
import { unpackJson } from '../../src/document/json-document.js';
import { publishRelease } from '../../src/release/publish.js';
import { imageFile, RELEASE_IMAGES } from '../../src/release/release-record.js';
import { rotateKeys } from '../../src/release/root-keys.js';
import { startStaticServer, type StaticServer } from '../../src/release/static-server.js';
import { initialTrustState, remoteChunks, UpdateRepository } from '../../src/release/update-client.js';
import { generateTestKey } from '../fixtures/debian-repo.js';
import { makeReleaseBuild } from '../fixtures/release-build.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

let work: string;
let repo: string;
let key: openpgp.PrivateKey;
let v1: string;
let v2: string;
let server: StaticServer;
const requests: string[] = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-repo-'));
  repo = join(work, 'repo');
  key = await generateTestKey('cairn test repository');
  v1 = await makeReleaseBuild(join(work, 'builds'), { version: '1.0.0' });
  v2 = await makeReleaseBuild(join(work, 'builds'), { version: '1.1.0', changes: [3, 57] });
  server = await startStaticServer(repo, '127.0.0.1', 0, (line) => requests.push(line));
});

after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

function client(keys: openpgp.PublicKey[], state = initialTrustState()) {
  return new UpdateRepository({ url: server.url, name: 'demo', architecture: 'amd64', keys, state });
}

test('publish stores each chunk once, a second release adds only its changed chunks, and releases are immutable', async () => {
  const first = await publishRelease({ buildDir: v1, repoDir: repo, key });
  assert.equal(first.alreadyPublished, false);
  const usr1 = first.images.find((i) => i.file === 'usr.erofs')!;
  assert.equal(usr1.addedChunks, usr1.chunks, 'an empty repository gets every chunk');
  const second = await publishRelease({ buildDir: v2, repoDir: repo, key });
  const usr2 = second.images.find((i) => i.file === 'usr.erofs')!;
  assert.ok(usr2.addedChunks > 0 && usr2.addedChunks <= 6, `two changed files add a few chunks, got ${usr2.addedChunks} of ${usr2.chunks}`);
  const uki2 = second.images.find((i) => i.file === 'demo_1.1.0.efi')!;
  assert.ok(uki2.addedChunks <= 2, `the UKI differs only in its command line: ${uki2.addedChunks} new chunks`);

  assert.equal((await publishRelease({ buildDir: v2, repoDir: repo, key })).alreadyPublished, true);
  // Another build under a published version is refused, and leaves no temporary folder.
  const other = await makeReleaseBuild(join(work, 'other'), { version: '1.1.0', changes: [1] });
  await assert.rejects(
    publishRelease({ buildDir: other, repoDir: repo, key }),
    (e: unknown) => e instanceof CairnError && /already published from a different build/.test(e.message),
  );
  // A build whose files no longer match its manifest is refused before anything is written.
  const broken = await makeReleaseBuild(join(work, 'broken'), { version: '9.0.0' });
  await writeFile(join(broken, 'usr.verity'), 'x', { flag: 'a' });
  await assert.rejects(publishRelease({ buildDir: broken, repoDir: repo, key }), /usr\.verity do not match manifest\.json/);
  assert.deepEqual((await readdir(join(repo, 'demo', 'releases'))).sort(), ['1.0.0', '1.1.0']);
});

test('channel commands: promote, phased rollout, pin back, revoke falls back; status via the CLI', async () => {
  const keyFile = join(work, 'release.asc');
  await writeFile(keyFile, key.armor());
  await promote({ repoDir: repo, name: 'demo', key, version: '1.0.0', channel: 'stable' });
  const doc = await promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'beta' });
  assert.equal(doc.serial, 1);
  await assert.rejects(promote({ repoDir: repo, name: 'demo', key, version: '3.0.0', channel: 'beta' }), /3\.0\.0 is not published/);
  await assert.rejects(promote({ repoDir: repo, name: 'demo', key, version: '1.0.0', channel: 'beta' }), /older than 1\.1\.0/);

  const { stdout } = await run(process.execPath, [
    cli,
    'channel',
    'promote',
    '1.1.0',
    '--to',
    'stable',
    '--rollout',
    '25',
    '--duration',
    '1d',
    '--repo',
    repo,
    '--sign-key',
    keyFile,
    '--json',
  ]);
  const [promoted] = JSON.parse(stdout);
  assert.equal(promoted.release, '1.1.0');
  assert.equal(promoted.serial, 2);
  assert.ok(promoted.rolloutPercent >= 25 && promoted.rolloutPercent < 26);

  const pinned = await pin({ repoDir: repo, name: 'demo', key, channel: 'beta', version: '1.0.0' });
  assert.deepEqual([pinned.release?.version, pinned.pinned, pinned.serial], ['1.0.0', true, 2]);
  await assert.rejects(promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'beta' }), /pinned to 1\.0\.0/);
  await pin({ repoDir: repo, name: 'demo', key, channel: 'beta', unpin: true });

  const revoked = await revoke({ repoDir: repo, name: 'demo', key, version: '1.1.0' });
  const stable = revoked.find((c) => c.channel === 'stable')!;
  assert.equal(stable.release?.version, '1.0.0', 'stable falls back to the last good version it offered');
  assert.deepEqual(stable.revoked, ['1.1.0']);
  await assert.rejects(promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'stable' }), /revoked/);

  const status = JSON.parse((await run(process.execPath, [cli, 'channel', 'status', '--repo', repo, '--json'])).stdout);
  assert.deepEqual(
    status.map((s: { channel: string; release: string; serial: number }) => [s.channel, s.release, s.serial]),
    [
      ['beta', '1.0.0', 4],
      ['stable', '1.0.0', 3],
    ],
  );
});

test('a host follows the channel, downloads only missing chunks and patches, and rebuilds the new images byte for byte', async () => {
  // A fresh channel for this test, signed now: 1.1.0 was revoked above, so publish 1.2.0. It
  // edits two files in place besides replacing three, and carries patches from 1.1.0.
  const v3 = await makeReleaseBuild(join(work, 'builds'), { version: '1.2.0', changes: [3, 57, 90], tweaks: [10, 11] });
  const published = await publishRelease({ buildDir: v3, repoDir: repo, key });
  const usrPatches = published.images.find((i) => i.file === 'usr.erofs')!.patches!;
  assert.equal(usrPatches.from, '1.1.0', 'patches start from the release published last');
  assert.ok(usrPatches.count > 0 && usrPatches.bytes < usrPatches.replacedBytes, `patches: ${JSON.stringify(usrPatches)}`);
  await promote({ repoDir: repo, name: 'demo', key, version: '1.2.0', channel: 'edge' });

  const saved: string[] = [];
  const state = initialTrustState();
  const host = new UpdateRepository({
    url: server.url,
    name: 'demo',
    architecture: 'amd64',
    keys: [key.toPublic()],
    state,
    saveState: async (s) => {
      saved.push(JSON.stringify(s));
    },
  });
  const channel = await host.channel('edge');
  assert.equal(channel.release?.version, '1.2.0');
  assert.equal(state.channels['demo/edge']?.serial, 1);
  assert.ok(saved.length > 0, 'the new channel serial was handed over for saving');
  const record = await host.release(channel.release!);
  const manifest = await host.manifest(record);
  assert.equal(manifest.usr.rootHash, record.rootHash);

  // The host runs 1.1.0, the release the patches start from.
  requests.length = 0;
  let planned = 0;
  let withoutPatches = 0;
  const out = join(work, 'host');
  await mkdir(out, { recursive: true });
  for (const image of RELEASE_IMAGES) {
    const index = await host.chunkIndex(record, image);
    const have = await indexLocal(
      RELEASE_IMAGES.map((k) => ({ path: join(v2, imageFile(k, 'demo', '1.1.0')) })),
      index.params,
    );
    const patches = await host.patchSet(record, image, index);
    assert.equal(patches === null, image === 'verity', `${image}: patches ${patches ? 'present' : 'absent'}`);
    const plan = planDelta(index, have, patches ?? undefined);
    planned += plan.totals.downloadBytes;
    withoutPatches += planDelta(index, have).totals.downloadBytes;
    const target = join(out, imageFile(image, 'demo', '1.2.0'));
    await reassemble(index, new DeltaSource(have, remoteChunks(host, index), { index, patches: plan.patches, fetch: (p) => host.patch(p) }), target);
    assert.deepEqual(await sha256File(target), await sha256File(join(v3, imageFile(image, 'demo', '1.2.0'))), `${image} rebuilt byte for byte`);
  }
  const fetched = requests.filter((r) => /^GET \/(chunks|patches)\//.test(r)).reduce((s, r) => s + Number(r.split(' ').at(-1)), 0);
  assert.equal(fetched, planned, 'exactly the planned bytes were downloaded');
  assert.ok(
    requests.some((r) => r.startsWith('GET /patches/')),
    'patches were used',
  );
  assert.ok(planned < withoutPatches, `patches made the download smaller: ${planned} against ${withoutPatches} bytes`);
  const full = (await stat(join(v3, 'usr.erofs'))).size;
  assert.ok(fetched < full / 4, `the delta (${fetched} bytes) is a fraction of the image (${full})`);

  // A host on 1.0.0 lacks the patches' base chunks: it plans whole chunks, and says nothing is patched.
  const usrIndex = await host.chunkIndex(record, 'usr');
  const onV1 = planDelta(
    usrIndex,
    await indexLocal([{ path: join(v1, 'usr.erofs') }], usrIndex.params),
    (await host.patchSet(record, 'usr', usrIndex)) ?? undefined,
  );
  assert.ok(onV1.totals.downloadChunks > 0);

  // A patch that is not what the patch list says is refused by its hash before it is applied.
  const entry = (await host.patchSet(record, 'usr', usrIndex))!.patches[0]!;
  const path = join(repo, 'patches', entry.sha256.slice(0, 2), `${entry.sha256}.patch`);
  const good = await readFile(path);
  const forged = Buffer.from(good);
  forged[forged.length - 1] ^= 1;
  await writeFile(path, forged);
  try {
    await assert.rejects(host.patch(entry), new RegExp(`patches/../${entry.sha256}\\.patch: SHA-256 [0-9a-f]{64}, the patch list says ${entry.sha256}`));
  } finally {
    await writeFile(path, good);
  }
});

test('key rotation: a host that trusts the old key follows the repository to the new one', async () => {
  const newKey = await generateTestKey('cairn test repository 2026');
  await rotateKeys(repo, [key], [newKey]);
  await promote({ repoDir: repo, name: 'demo', key: newKey, version: '1.2.0', channel: 'rotated' });
  const state = initialTrustState();
  const host = client([key.toPublic()], state);
  assert.equal((await host.channel('rotated')).release?.version, '1.2.0');
  assert.equal(state.rootSerial, 1);
  // After the rotation the old key alone no longer counts: a channel it signs is refused.
  await promote({ repoDir: repo, name: 'demo', key, version: '1.2.0', channel: 'old-key' });
  await assert.rejects(
    client([key.toPublic()], state).channel('old-key'),
    (e: unknown) => e instanceof CairnError && /does not verify with any key in the repository keys/.test(e.message),
  );
  // A root signed only by a key the host never trusted is refused, and trust stays where it was.
  const intruder = await generateTestKey('intruder');
  await rotateKeys(repo, [intruder], [intruder]);
  const before = JSON.stringify(state);
  await assert.rejects(client([key.toPublic()], state).channel('rotated'), /root-2\.json\.asc: signature does not verify/);
  assert.equal(JSON.stringify(state), before);
  await rm(join(repo, 'keys', 'root-2.json.asc'));
  assert.ok(
    (unpackJson(await readFile(join(repo, 'demo', 'releases', '1.2.0', 'usr.erofs.chunks.json.br')), 'index') as { chunks: unknown[] }).chunks.length > 0,
  );
});
