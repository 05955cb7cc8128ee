// Hostile update repositories, one case per attack a host must survive (The Update Framework's
// threat model, plus broken transfers). Each is refused with a clear error, the host's trust
// state is left as it was, and no image file appears.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type * as openpgp from 'openpgp';
import { CairnError } from '../../src/errors.js';
import type { ChannelDoc } from '../../src/release/channel.js';
import { promote, readChannel, releaseRef } from '../../src/release/channel-ops.js';
import { reassemble, type ChunkIndex } from '../../src/release/chunk-index.js';
import { formatJson, packJson } from '../../src/document/json-document.js';
import { publishRelease } from '../../src/release/publish.js';
import { RELEASE_RECORD_KIND, validateReleaseRecord, type ReleaseRecord } from '../../src/release/release-record.js';
import { channelPath, chunkPath, releaseRecordPath } from '../../src/release/repository-layout.js';
import { readSignedJsonUnverified, signJson } from '../../src/release/signed-json.js';
import { initialTrustState, remoteChunks, UpdateRepository, type TrustState } from '../../src/release/update-client.js';
import { generateTestKey, serveDir, type ServeOptions, type TestServer } from '../fixtures/debian-repo.js';
import { forgeChunk, makeReleaseBuild } from '../fixtures/release-build.js';

let work: string;
let repo: string;
let key: openpgp.PrivateKey;
let server: TestServer;
/** What a host has after following `stable` to serial 3. */
let seen: TrustState;
let stableV1: Buffer;
let record: ReleaseRecord;
let usrIndex: ChunkIndex;

const STABLE = '/' + channelPath('demo', 'stable');
const RELEASE = '/' + releaseRecordPath('demo', '1.1.0');

function host(state: TrustState, http = {}): UpdateRepository {
  return new UpdateRepository({ url: server.url, name: 'demo', architecture: 'amd64', keys: [key.toPublic()], state, http: { stallTimeoutMs: 400, ...http } });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-hostile-'));
  repo = join(work, 'repo');
  key = await generateTestKey('cairn test repository');
  for (const [version, changes] of [
    ['1.0.0', []],
    ['1.1.0', [5]],
  ] as const) {
    await publishRelease({ buildDir: await makeReleaseBuild(join(work, 'builds'), { version, changes: [...changes] }), repoDir: repo, key });
  }
  await promote({ repoDir: repo, name: 'demo', key, version: '1.0.0', channel: 'stable' });
  stableV1 = await readFile(join(repo, channelPath('demo', 'stable')));
  await promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'stable' });
  await promote({
    repoDir: repo,
    name: 'demo',
    key,
    version: '1.1.0',
    channel: 'stable',
    rollout: { start: new Date().toISOString(), startPercent: 100, durationSeconds: 0 },
  });
  server = await serveDir(repo);
  seen = initialTrustState();
  const h = host(seen);
  const channel = await h.channel('stable');
  assert.equal(channel.serial, 3);
  record = await h.release(channel.release!);
  usrIndex = await h.chunkIndex(record, 'usr');
});

after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs `attack` against a server misbehaving as `options`; it must fail with `message` and leave the state alone. */
async function refused(options: ServeOptions, attack: (h: UpdateRepository) => Promise<unknown>, message: RegExp, http = {}): Promise<void> {
  server.options = options;
  const state: TrustState = structuredClone(seen);
  try {
    await assert.rejects(attack(host(state, http)), (e: unknown) => {
      assert.ok(e instanceof CairnError, `a CairnError, got ${String(e)}`);
      assert.match(e.message, message);
      return true;
    });
  } finally {
    server.options = {};
  }
  assert.deepEqual(state, seen, 'the trust state is unchanged');
}

async function signedChannel(change: (doc: ChannelDoc) => void, signer = key): Promise<Buffer> {
  const doc = (await readChannel(repo, 'demo', 'stable'))!;
  change(doc);
  return Buffer.from(await signJson(doc, [signer]));
}

test('unsigned channel metadata is refused', async () => {
  const doc = (await readChannel(repo, 'demo', 'stable'))!;
  await refused({ replace: { [STABLE]: Buffer.from(formatJson({ ...doc, serial: 99 })) } }, (h) => h.channel('stable'), /not signed/);
});

test('channel metadata signed by a key the host does not trust is refused', async () => {
  const stranger = await generateTestKey('stranger');
  await refused(
    {
      replace: {
        [STABLE]: await signedChannel((d) => {
          d.serial = 99;
        }, stranger),
      },
    },
    (h) => h.channel('stable'),
    /does not verify with any key in the repository keys/,
  );
});

test('channel metadata altered after signing is refused', async () => {
  const text = (await readFile(join(repo, channelPath('demo', 'stable')), 'utf8')).replace('"serial": 3', '"serial": 9');
  await refused({ replace: { [STABLE]: Buffer.from(text) } }, (h) => h.channel('stable'), /signature by [0-9A-F]+ .* is invalid/);
});

test('rollback: an older channel than one already seen is refused', async () => {
  await refused({ replace: { [STABLE]: stableV1 } }, (h) => h.channel('stable'), /serial 1 is older than serial 3, already seen/);
});

test('a different channel document under a serial already seen is refused', async () => {
  await refused(
    {
      replace: {
        [STABLE]: await signedChannel((d) => {
          d.pinned = true;
        }),
      },
    },
    (h) => h.channel('stable'),
    /a different document with serial 3/,
  );
});

test('freeze: expired channel metadata is refused', async () => {
  const stale = await signedChannel((d) => {
    d.serial = 10;
    d.expires = new Date(Date.now() - 1000).toISOString();
  });
  await refused({ replace: { [STABLE]: stale } }, (h) => h.channel('stable'), /expired at .* \(serial 10\)/);
});

test('a phased rollout whose start is not a time is refused, not offered to every host', async () => {
  const bad = await signedChannel((d) => {
    d.serial = 11;
    d.rollout = { start: 'soon', startPercent: 5, durationSeconds: 86400 };
  });
  await refused({ replace: { [STABLE]: bad } }, (h) => h.channel('stable'), /rollout\.start "soon" is not a time \(serial 11\)/);
});

test('endless data: a channel that never ends is cut off at the metadata ceiling', async () => {
  await refused({ endless: [STABLE] }, (h) => h.channel('stable'), /larger than the 1048576 bytes cairn accepts/);
});

test('mix-and-match: a channel for another image is refused', async () => {
  await refused(
    {
      replace: {
        [STABLE]: await signedChannel((d) => {
          d.serial = 11;
          d.name = 'other';
        }),
      },
    },
    (h) => h.channel('stable'),
    /is for the image other, this host runs demo/,
  );
});

test('mix-and-match: a release record for another architecture is refused', async () => {
  const foreign = Buffer.from(await signJson({ ...record, architecture: 'arm64' }, [key]));
  const ref = { version: '1.1.0', size: foreign.length, sha256: createHash('sha256').update(foreign).digest('hex') };
  await refused({ replace: { [RELEASE]: foreign } }, (h) => h.release(ref), /is for arm64, this host is amd64/);
});

test('a release record other than the one the channel names is refused', async () => {
  const ref = await releaseRef(repo, 'demo', '1.1.0');
  const older = await readFile(join(repo, releaseRecordPath('demo', '1.0.0')));
  await refused({ replace: { [RELEASE]: older } }, (h) => h.release(ref), /but the channel names \d+ bytes with [0-9a-f]{64}/);
});

test('endless data: a manifest larger than declared is cut off at its declared size', async () => {
  const path = `/demo/releases/1.1.0/${record.manifest.path}`;
  await refused({ endless: [path] }, (h) => h.manifest(record), new RegExp(`larger than the ${record.manifest.size} bytes cairn accepts`));
});

const firstChunk = () => usrIndex.chunks[0]!;
const chunkUrl = () => '/' + chunkPath(firstChunk().sha256);

async function rebuildFails(options: ServeOptions, message: RegExp, http = {}): Promise<void> {
  const out = join(work, `usr-${Math.random().toString(36).slice(2)}.erofs`);
  await refused(options, (h) => reassemble(usrIndex, remoteChunks(h, usrIndex), out), message, http);
  await assert.rejects(access(out), 'no image file was left behind');
}

test('endless data: a chunk larger than its stored size is refused', async () => {
  await rebuildFails({ endless: [chunkUrl()] }, /larger than the \d+ bytes cairn accepts/);
});

test('a chunk whose content does not match its hash is refused', async () => {
  const fake = forgeChunk(await readFile(join(repo, chunkPath(firstChunk().sha256)))).packed;
  await rebuildFails({ replace: { [chunkUrl()]: fake } }, /holds data with SHA-256 [0-9a-f]{64}/);
});

test('an index whose chunks point outside its image is refused, even when signed', async () => {
  const bad = structuredClone(usrIndex);
  bad.chunks.at(-1)!.size += 4096;
  const text = packJson(bad);
  const forged: ReleaseRecord = {
    ...record,
    images: {
      ...record.images,
      usr: { ...record.images.usr, index: { path: 'usr.erofs.chunks.json.br', size: text.length, sha256: createHash('sha256').update(text).digest('hex') } },
    },
  };
  const signed = Buffer.from(await signJson(forged, [key]));
  const parsed = await readSignedJsonUnverified(signed.toString(), 'forged', validateReleaseRecord, RELEASE_RECORD_KIND);
  await refused(
    { replace: { '/demo/releases/1.1.0/usr.erofs.chunks.json.br': text } },
    (h) => h.chunkIndex(parsed, 'usr'),
    /chunk index: chunk \d+ ends at \d+, past the image size \d+/,
  );
  // Unsigned, the same index does not even get that far: it is not the file the record names.
  await refused({ replace: { '/demo/releases/1.1.0/usr.erofs.chunks.json.br': text } }, (h) => h.chunkIndex(record, 'usr'), /the release record says/);
});

test('a truncated response is retried, then refused', async () => {
  await rebuildFails({ dropAfter: { [chunkUrl()]: { bytes: 100, times: 10 } } }, /download failed after 3 attempts/);
});

test('a redirect loop is refused', async () => {
  await refused({ redirectLoop: [STABLE] }, (h) => h.channel('stable'), /a redirect loop/);
});

test('a server that stalls mid-body is cut off', async () => {
  await rebuildFails({ stallAfter: { [chunkUrl()]: 100 } }, /stalled/, { attempts: 1 });
});
