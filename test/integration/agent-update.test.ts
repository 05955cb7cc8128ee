// The update transaction on a host made of files (a GPT disk image and an ESP folder), against a
// repository on loopback: v1 → v2 with a delta download, the boot and blessing of v2, a v3 that
// fails its health checks until its tries run out and is recorded as bad; and the agent killed
// at every one of its writes, after which the host still boots a verified slot and the next run
// finishes the update.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type * as openpgp from 'openpgp';
import { afterBoot } from '../../src/agent/after-boot.js';
import { listEntries } from '../../src/agent/boot-entries.js';
import { loadAgentConfig } from '../../src/agent/config.js';
import { loadState } from '../../src/agent/state.js';
import { UpdateTransaction, type HostContext } from '../../src/agent/update.js';
import { readGpt } from '../../src/image/gpt.js';
import { verityPartitionUuids } from '../../src/image/verity.js';
import { promote } from '../../src/release/channel-ops.js';
import type { ChunkIndex, ChunkIndexEntry } from '../../src/release/chunk-index.js';
import { indexLocal, planDelta } from '../../src/release/delta-plan.js';
import { unpackJson } from '../../src/document/json-document.js';
import type { PatchSet } from '../../src/release/patch-set.js';
import { readManifest } from '../../src/pipeline/manifest.js';
import { publishRelease } from '../../src/release/publish.js';
import { startStaticServer, type StaticServer } from '../../src/release/static-server.js';
import { bootsVerified, countTry, pickEntry, provisionHost, writeLoaderEntry, type TestHost } from '../fixtures/agent-host.js';
import { generateTestKey, serveDir, type ServeOptions } from '../fixtures/debian-repo.js';
import { forgeChunk, makeReleaseBuild } from '../fixtures/release-build.js';

const run = promisify(execFile);
const child = fileURLToPath(new URL('../fixtures/agent-child.js', import.meta.url));

let work: string;
let repo: string;
let key: openpgp.PrivateKey;
let server: StaticServer;
const builds: Record<string, string> = {};

function agentYaml(health: string[]) {
  return (stateDir: string) => `repository: ${server.url}
channel: stable
keys: [${join(work, 'release.pub.asc')}]
strategy: {type: immediate}
state-dir: ${stateDir}
health:
  timeout: 20s
  commands:
    - {command: [${health.map((h) => JSON.stringify(h)).join(', ')}], timeout: 10s}
`;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-agent-update-'));
  repo = join(work, 'repo');
  key = await generateTestKey('cairn test repository');
  await writeFile(join(work, 'release.pub.asc'), key.toPublic().armor());
  // Each release replaces files and edits others in place (those get patches). The hosts here run
  // 1.0.0 and most install 1.2.0, so 1.2.0's patches start from 1.0.0: the cut points then fall
  // inside patched runs too.
  for (const [version, changes, tweaks] of [
    ['1.0.0', [], []],
    ['1.1.0', [3, 50], [10]],
    ['1.2.0', [3, 50, 77], [10, 11]],
  ] as const) {
    builds[version] = await makeReleaseBuild(join(work, 'builds'), { version, changes: [...changes], tweaks: [...tweaks] });
    await publishRelease({ buildDir: builds[version]!, repoDir: repo, key, deltaFrom: version === '1.2.0' ? '1.0.0' : undefined });
  }
  await promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'stable' });
  server = await startStaticServer(repo);
});

after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function host(name: string, health = ['/bin/true']): Promise<TestHost> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  return provisionHost(dir, builds['1.0.0']!, agentYaml(health));
}

async function transaction(h: TestHost, context: HostContext = h.context) {
  const config = await loadAgentConfig(h.config);
  return new UpdateTransaction({ host: context, config, keys: [key.toPublic()], log: () => undefined });
}

/** Boots what the ESP and disk say, as systemd-boot would (counting the try); returns the new context. */
async function boot(h: TestHost): Promise<HostContext> {
  const entry = pickEntry(await listEntries(h.esp))!;
  const booted = await bootsVerified(h, join(h.dir, 'scratch.raw'));
  assert.equal(booted.entry, entry.file);
  await countTry(entry);
  await writeLoaderEntry(join(h.dir, 'LoaderEntrySelected'), entry.file);
  return { ...h.context, usrHash: booted.usrHash, version: booted.version! };
}

test('v1 → v2: only missing chunks are downloaded, slot B verifies, the new boot is blessed after its checks', async () => {
  const h = await host('happy');
  const outcome = await (await transaction(h)).run();
  assert.equal(outcome.status, 'installed');
  assert.ok(
    outcome.status === 'installed' && outcome.downloadedBytes > 0 && outcome.downloadedBytes < outcome.fullBytes / 4,
    `a delta: ${JSON.stringify(outcome)}`,
  );
  assert.deepEqual(
    (await listEntries(h.esp)).map((e) => e.file),
    ['demo_1.0.0.efi', 'demo_1.1.0+3.efi'],
  );
  const v2 = (await readManifest(builds['1.1.0']!)).manifest;
  const slotB = (await readGpt(h.disk)).partitions.find((p) => p.label === 'usr-B')!;
  assert.equal(slotB.uuid, verityPartitionUuids(v2.usr.rootHash).usr, 'slot B is named for the new root hash');
  const { state } = await loadState(h.stateDir);
  assert.equal(state.transaction?.step, 'installed');

  const context = await boot(h);
  assert.equal(context.version, '1.1.0');
  const after = await afterBoot({
    host: context,
    stateDir: h.stateDir,
    health: (await loadAgentConfig(h.config)).health,
    log: () => undefined,
    efivar: join(h.dir, 'LoaderEntrySelected'),
  });
  assert.equal(after.status, 'blessed');
  assert.deepEqual(
    (await listEntries(h.esp)).map((e) => e.file),
    ['demo_1.0.0.efi', 'demo_1.1.0.efi'],
  );
  assert.equal((await loadState(h.stateDir)).state.transaction, null);
  // Nothing newer: the agent says so and changes nothing.
  assert.deepEqual(await (await transaction(h, context)).run(), { status: 'up-to-date', reason: "1.1.0 is the channel's release" });
});

test('a release whose health checks fail is tried until its counter runs out, then recorded as bad', async () => {
  const h = await host('rollback', ['/bin/sh', '-c', 'test "$(cat /proc/sys/kernel/hostname)" = never']);
  await (await transaction(h)).run();
  let context = await boot(h);
  await afterBoot({
    host: context,
    stateDir: h.stateDir,
    health: { timeout: 5, checks: [] },
    log: () => undefined,
    efivar: join(h.dir, 'LoaderEntrySelected'),
  });
  // Now on 1.1.0, blessed; the channel moves to 1.2.0, whose checks never pass.
  await promote({ repoDir: repo, name: 'demo', key, version: '1.2.0', channel: 'stable' });
  const installed = await (await transaction(h, context)).run();
  assert.equal(installed.status, 'installed');
  assert.deepEqual(
    (await listEntries(h.esp)).map((e) => e.file),
    ['demo_1.1.0.efi', 'demo_1.2.0+3.efi'],
    'the entry of the overwritten slot (1.0.0) went first',
  );
  const v1 = context;
  const health = (await loadAgentConfig(h.config)).health;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const trial = await boot(h);
    assert.equal(trial.version, '1.2.0', `try ${attempt} boots 1.2.0`);
    const result = await afterBoot({
      host: trial,
      stateDir: h.stateDir,
      health: { ...health, timeout: 2 },
      probes: { retryDelayMs: 200 },
      log: () => undefined,
      efivar: join(h.dir, 'LoaderEntrySelected'),
    });
    assert.equal(result.status, 'unhealthy');
  }
  context = await boot(h);
  assert.equal(context.version, '1.1.0', 'out of tries, systemd-boot falls back');
  assert.equal(context.usrHash, v1.usrHash);
  const fell = await afterBoot({ host: context, stateDir: h.stateDir, health, log: () => undefined, efivar: join(h.dir, 'LoaderEntrySelected') });
  assert.deepEqual(fell, { status: 'fell-back', bad: '1.2.0', version: '1.1.0' });
  const { state } = await loadState(h.stateDir);
  assert.deepEqual(
    state.bad.map((b) => b.version),
    ['1.2.0'],
  );
  assert.deepEqual(
    (await listEntries(h.esp)).map((e) => e.file),
    ['demo_1.1.0.efi'],
  );
  assert.deepEqual(await (await transaction(h, context)).run(), { status: 'up-to-date', reason: '1.2.0 failed on this host before' });
  await promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'stable' }).catch(() => undefined);
});

test('the agent killed at each of its writes: the host always boots a verified slot, and the next run completes', { timeout: 900_000 }, async (t) => {
  await promote({ repoDir: repo, name: 'demo', key, version: '1.2.0', channel: 'cut' }).catch(() => undefined);
  const template = await host('cut-template');
  await writeFile(template.config, (await readFile(template.config, 'utf8')).replace('channel: stable', 'channel: cut'));
  const args = (h: TestHost) => JSON.stringify({ config: h.config, host: h.context });
  const copyHost = async (name: string): Promise<TestHost> => {
    const dir = join(work, name);
    await cp(template.dir, dir, { recursive: true });
    const h: TestHost = {
      dir,
      disk: join(dir, 'disk.raw'),
      esp: join(dir, 'esp'),
      stateDir: join(dir, 'state'),
      config: join(dir, 'agent.yaml'),
      context: { ...template.context, disk: join(dir, 'disk.raw'), esp: join(dir, 'esp') },
    };
    await writeFile(h.config, (await readFile(template.config, 'utf8')).replace(template.stateDir, h.stateDir));
    return h;
  };
  // Count the cut points of a whole run.
  const traced = await copyHost('cut-trace');
  const trace = await run(process.execPath, [child, args(traced)], { env: { ...process.env, CAIRN_AGENT_CUT_TRACE: '1' } });
  const points = trace.stderr.split('\n').filter((l) => l.startsWith('cut-point ')).length;
  assert.ok(points > 20, `a run passes many cut points (${points})`);
  let recovered = 0;
  const versions = new Set<string>();
  for (let n = 1; n <= points; n++) {
    const h = await copyHost(`cut-${n}`);
    const killed = await run(process.execPath, [child, args(h)], { env: { ...process.env, CAIRN_AGENT_CUT_AT: String(n) } }).then(
      () => null,
      (err: { signal?: string }) => err.signal,
    );
    assert.equal(killed, 'SIGKILL', `cut ${n} killed the agent`);
    const booted = await bootsVerified(h, join(h.dir, 'scratch.raw'));
    versions.add(booted.version!);
    const finished = await run(process.execPath, [child, args(h)]);
    assert.equal(JSON.parse(finished.stdout).status, 'installed', `after cut ${n} the next run finishes`);
    const final = await bootsVerified(h, join(h.dir, 'scratch.raw'));
    assert.equal(final.version, '1.2.0');
    recovered++;
    await rm(h.dir, { recursive: true, force: true });
  }
  assert.equal(recovered, points);
  assert.deepEqual([...versions].sort(), ['1.0.0', '1.2.0'], 'each cut boots the old release or, after the UKI is installed, the new one');
  t.diagnostic(`cut points tried: ${points}, recovered: ${recovered}`);
});

test('through the agent, hostile responses are refused and nothing they carried reaches the inactive slot', async () => {
  // Chunks are attacked on a release published without patches (a host downloads its changed
  // chunks whole), patches on 1.1.0, whose changed chunks a host on 1.0.0 makes from patches.
  const plain = await makeReleaseBuild(join(work, 'builds'), { version: '1.3.0', changes: [3, 50, 77, 91] });
  await publishRelease({ buildDir: plain, repoDir: repo, key, deltaFrom: false });
  const hostile = await serveDir(repo);
  try {
    for (const version of ['1.3.0', '1.1.0']) {
      const h = await host(`hostile-${version}`);
      const channel = `hostile-${version.replace(/\./g, '-')}`;
      await promote({ repoDir: repo, name: 'demo', key, version, channel });
      await writeFile(h.config, (await readFile(h.config, 'utf8')).replace(server.url, hostile.url).replace('channel: stable', `channel: ${channel}`));
      const config = await loadAgentConfig(h.config);
      const index = unpackJson(await readFile(join(repo, `demo/releases/${version}/usr.erofs.chunks.json.br`)), 'index') as ChunkIndex;
      const patches = await readFile(join(repo, `demo/releases/${version}/usr.erofs.patches.json.br`)).catch(() => null);
      const patchSet = patches && (unpackJson(patches, 'patches') as PatchSet);
      const plan = planDelta(index, await indexLocal([{ path: join(builds['1.0.0']!, 'usr.erofs') }], index.params), patchSet ?? undefined);
      const slotB = (await readGpt(h.disk)).partitions.find((p) => p.label === 'usr-B')!;
      const slotBytes = async (at: ChunkIndexEntry) => {
        const handle = await open(h.disk, 'r');
        try {
          const buf = Buffer.alloc(at.size);
          await handle.read(buf, 0, buf.length, slotB.offset + at.offset);
          return buf;
        } finally {
          await handle.close();
        }
      };
      const cases: [string, ServeOptions, RegExp, ChunkIndexEntry][] = [];
      if (version === '1.3.0') {
        assert.equal(patchSet, null);
        const missing = plan.download[0]!;
        const url = `/chunks/${missing.sha256.slice(0, 2)}/${missing.sha256}.br`;
        const forged = forgeChunk(await readFile(join(repo, url)));
        cases.push(
          ['forged chunk', { replace: { [url]: forged.packed } }, /chunk [0-9a-f]{64}: .* holds data with SHA-256/, missing],
          ['truncated chunk', { dropAfter: { [url]: { bytes: 10, times: 100 } } }, /download failed after 3 attempts/, missing],
          ['endless chunk', { endless: [url] }, /larger than the \d+ bytes cairn accepts/, missing],
        );
      } else {
        const patch = plan.patches[0]!;
        assert.ok(patch, "a host on 1.0.0 uses 1.1.0's patches");
        const url = `/patches/${patch.sha256.slice(0, 2)}/${patch.sha256}.patch`;
        const forged = await readFile(join(repo, url));
        forged[forged.length - 1] ^= 1;
        const first = index.chunks[patch.first]!;
        cases.push(
          ['forged patch', { replace: { [url]: forged } }, /\.patch: SHA-256 [0-9a-f]{64}, the patch list says/, first],
          ['truncated patch', { dropAfter: { [url]: { bytes: 10, times: 100 } } }, /download failed after 3 attempts/, first],
          ['endless patch', { endless: [url] }, /larger than the \d+ bytes cairn accepts/, first],
        );
      }
      for (const [what, options, message, region] of cases) {
        hostile.options = options;
        const tx = new UpdateTransaction({ host: h.context, config, keys: [key.toPublic()], log: () => undefined });
        await assert.rejects(tx.run(), message, what);
        assert.ok(
          (await slotBytes(region)).every((b) => b === 0),
          `${what}: slot B holds nothing of what was refused`,
        );
        const { state } = await loadState(h.stateDir);
        assert.match(state.lastError?.message ?? '', message, `${what}: the error is recorded for status`);
      }
      hostile.options = {};
      const outcome = await new UpdateTransaction({ host: h.context, config, keys: [key.toPublic()], log: () => undefined }).run();
      assert.equal(outcome.status, 'installed', `${version}: with an honest server the same transaction completes`);
    }
  } finally {
    await hostile.close();
  }
});
