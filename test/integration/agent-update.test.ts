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
import type { ChunkIndex } from '../../src/release/chunk-index.js';
import { indexLocal } from '../../src/release/delta-plan.js';
import { readManifest } from '../../src/release/manifest.js';
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
  for (const [version, changes] of [['1.0.0', []], ['1.1.0', [3, 50]], ['1.2.0', [3, 50, 77]]] as const) {
    builds[version] = await makeReleaseBuild(join(work, 'builds'), { version, changes: [...changes] });
    await publishRelease({ buildDir: builds[version]!, repoDir: repo, key });
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
  assert.ok(outcome.status === 'installed' && outcome.downloadedBytes > 0 && outcome.downloadedBytes < outcome.fullBytes / 4, `a delta: ${JSON.stringify(outcome)}`);
  assert.deepEqual((await listEntries(h.esp)).map((e) => e.file), ['demo_1.0.0.efi', 'demo_1.1.0+3.efi']);
  const v2 = (await readManifest(builds['1.1.0']!)).manifest;
  const slotB = (await readGpt(h.disk)).partitions.find((p) => p.label === 'usr-B')!;
  assert.equal(slotB.uuid, verityPartitionUuids(v2.usr.rootHash).usr, 'slot B is named for the new root hash');
  const { state } = await loadState(h.stateDir);
  assert.equal(state.transaction?.step, 'installed');

  const context = await boot(h);
  assert.equal(context.version, '1.1.0');
  const after = await afterBoot({ host: context, stateDir: h.stateDir, health: (await loadAgentConfig(h.config)).health, log: () => undefined, efivar: join(h.dir, 'LoaderEntrySelected') });
  assert.equal(after.status, 'blessed');
  assert.deepEqual((await listEntries(h.esp)).map((e) => e.file), ['demo_1.0.0.efi', 'demo_1.1.0.efi']);
  assert.equal((await loadState(h.stateDir)).state.transaction, null);
  // Nothing newer: the agent says so and changes nothing.
  assert.deepEqual(await (await transaction(h, context)).run(), { status: 'up-to-date', reason: '1.1.0 is the channel\'s release' });
});

test('a release whose health checks fail is tried until its counter runs out, then recorded as bad', async () => {
  const h = await host('rollback', ['/bin/sh', '-c', 'test "$(cat /proc/sys/kernel/hostname)" = never']);
  await (await transaction(h)).run();
  let context = await boot(h);
  await afterBoot({ host: context, stateDir: h.stateDir, health: { timeout: 5, checks: [] }, log: () => undefined, efivar: join(h.dir, 'LoaderEntrySelected') });
  // Now on 1.1.0, blessed; the channel moves to 1.2.0, whose checks never pass.
  await promote({ repoDir: repo, name: 'demo', key, version: '1.2.0', channel: 'stable' });
  const installed = await (await transaction(h, context)).run();
  assert.equal(installed.status, 'installed');
  assert.deepEqual((await listEntries(h.esp)).map((e) => e.file), ['demo_1.1.0.efi', 'demo_1.2.0+3.efi'], 'the entry of the overwritten slot (1.0.0) went first');
  const v1 = context;
  const health = (await loadAgentConfig(h.config)).health;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const trial = await boot(h);
    assert.equal(trial.version, '1.2.0', `try ${attempt} boots 1.2.0`);
    const result = await afterBoot({ host: trial, stateDir: h.stateDir, health: { ...health, timeout: 2 }, probes: { retryDelayMs: 200 }, log: () => undefined, efivar: join(h.dir, 'LoaderEntrySelected') });
    assert.equal(result.status, 'unhealthy');
  }
  context = await boot(h);
  assert.equal(context.version, '1.1.0', 'out of tries, systemd-boot falls back');
  assert.equal(context.usrHash, v1.usrHash);
  const fell = await afterBoot({ host: context, stateDir: h.stateDir, health, log: () => undefined, efivar: join(h.dir, 'LoaderEntrySelected') });
  assert.deepEqual(fell, { status: 'fell-back', bad: '1.2.0', version: '1.1.0' });
  const { state } = await loadState(h.stateDir);
  assert.deepEqual(state.bad.map((b) => b.version), ['1.2.0']);
  assert.deepEqual((await listEntries(h.esp)).map((e) => e.file), ['demo_1.1.0.efi']);
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
    const h: TestHost = { dir, disk: join(dir, 'disk.raw'), esp: join(dir, 'esp'), stateDir: join(dir, 'state'), config: join(dir, 'agent.yaml'), context: { ...template.context, disk: join(dir, 'disk.raw'), esp: join(dir, 'esp') } };
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
    const killed = await run(process.execPath, [child, args(h)], { env: { ...process.env, CAIRN_AGENT_CUT_AT: String(n) } }).then(() => null, (err: { signal?: string }) => err.signal);
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
  const h = await host('hostile');
  const hostile = await serveDir(repo);
  try {
    await promote({ repoDir: repo, name: 'demo', key, version: '1.1.0', channel: 'hostile' });
    await writeFile(h.config, (await readFile(h.config, 'utf8')).replace(server.url, hostile.url).replace('channel: stable', 'channel: hostile'));
    const config = await loadAgentConfig(h.config);
    // A chunk of 1.1.0's usr image that a host on 1.0.0 must download.
    const record = JSON.parse(await readFile(join(repo, 'demo/releases/1.1.0/usr.erofs.chunks.json'), 'utf8')) as ChunkIndex;
    const have = await indexLocal([{ path: join(builds['1.0.0']!, 'usr.erofs') }], record.params);
    const missing = record.chunks.find((c) => !have.has(c.sha256))!;
    const url = `/chunks/${missing.sha256.slice(0, 2)}/${missing.sha256}.br`;
    const forged = forgeChunk(await readFile(join(repo, url)));
    const forgedRaw = forged.raw;
    const slotB = (await readGpt(h.disk)).partitions.find((p) => p.label === 'usr-B')!;
    const slotBytes = async () => {
      const handle = await open(h.disk, 'r');
      try {
        const buf = Buffer.alloc(missing.size);
        await handle.read(buf, 0, buf.length, slotB.offset + missing.offset);
        return buf;
      } finally {
        await handle.close();
      }
    };
    const cases: [string, ServeOptions, RegExp][] = [
      ['forged chunk', { replace: { [url]: forged.packed } }, /chunk [0-9a-f]{64}: .* holds data with SHA-256/],
      ['truncated chunk', { dropAfter: { [url]: { bytes: 10, times: 100 } } }, /download failed after 3 attempts/],
      ['endless chunk', { endless: [url] }, /larger than the \d+ bytes cairn accepts/],
    ];
    for (const [what, options, message] of cases) {
      hostile.options = options;
      const tx = new UpdateTransaction({ host: h.context, config, keys: [key.toPublic()], log: () => undefined });
      await assert.rejects(tx.run(), message, what);
      assert.ok(!(await slotBytes()).equals(forgedRaw), `${what}: the refused data is not in slot B`);
      assert.ok((await slotBytes()).every((b) => b === 0), `${what}: slot B holds nothing at that chunk`);
      const { state } = await loadState(h.stateDir);
      assert.match(state.lastError?.message ?? '', message, `${what}: the error is recorded for status`);
    }
    hostile.options = {};
    const outcome = await new UpdateTransaction({ host: h.context, config, keys: [key.toPublic()], log: () => undefined }).run();
    assert.equal(outcome.status, 'installed', 'with an honest server the same transaction completes');
  } finally {
    await hostile.close();
  }
});
