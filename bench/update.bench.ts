// Applying an update on a host, against simply copying the new image into the slot, in one run.
// A host made of files (tests' agent-host fixture: a GPT disk image with OLD in slot A and an
// ESP folder) updates to NEW from a repository served on loopback: the agent's whole
// transaction (channel, delta plan against the running slot, download of the missing chunks,
// streaming into slot B, full dm-verity check, GPT rename, UKI install). Beside it: `dd` of
// NEW's usr.erofs and usr.verity into the same slot partitions (conv=fsync), the floor a
// full-image updater cannot beat, and the same dd followed by cairn's verification.
// Usage: node dist/bench/update.bench.js OLD_BUILD NEW_BUILD   (build folders of one recipe)
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig } from '../src/agent/config.js';
import { UpdateTransaction } from '../src/agent/update.js';
import { readGpt } from '../src/image/gpt.js';
import { verifyImage } from '../src/image/verity.js';
import { promote } from '../src/release/channel-ops.js';
import { readManifest } from '../src/pipeline/manifest.js';
import { publishRelease } from '../src/release/publish.js';
import { startStaticServer } from '../src/release/static-server.js';
import { provisionHost } from '../test/fixtures/agent-host.js';
import { generateTestKey } from '../test/fixtures/debian-repo.js';

const [oldBuild, newBuild] = process.argv.slice(2);
if (!oldBuild || !newBuild) {
  process.stderr.write('usage: node dist/bench/update.bench.js OLD_BUILD NEW_BUILD\n');
  process.exit(2);
}
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
const work = await mkdtemp(join(tmpdir(), 'cairn-bench-update-'));
try {
  const key = await generateTestKey('bench');
  const repo = join(work, 'repo');
  for (const build of [oldBuild, newBuild]) await publishRelease({ buildDir: build, repoDir: repo, key });
  const { manifest } = await readManifest(newBuild);
  await promote({ repoDir: repo, name: manifest.name, key, version: manifest.version, channel: 'bench' });
  const server = await startStaticServer(repo);
  await writeFile(join(work, 'release.pub.asc'), key.toPublic().armor());
  const host = await provisionHost(
    join(work),
    oldBuild,
    (stateDir) => `repository: ${server.url}\nchannel: bench\nkeys: [${join(work, 'release.pub.asc')}]\nstate-dir: ${stateDir}\n`,
    { usr: manifest.artifacts['usr.erofs']!.size, usrVerity: manifest.artifacts['usr.verity']!.size },
  );
  const config = await loadAgentConfig(host.config);
  execFileSync('sync');

  let start = process.hrtime.bigint();
  const outcome = await new UpdateTransaction({ host: host.context, config, keys: [key.toPublic()], log: () => undefined }).run();
  const agentSeconds = seconds(start);
  await server.close();
  if (outcome.status !== 'installed') throw new Error(`the agent did not install: ${JSON.stringify(outcome)}`);

  const slot = (await readGpt(host.disk)).partitions.filter((p) => p.label === 'usr-B' || p.label === 'usr-B-verity');
  const dd = (file: string, offset: number) =>
    execFileSync('dd', [`if=${join(newBuild, file)}`, `of=${host.disk}`, 'bs=4M', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc,fsync', 'status=none']);
  start = process.hrtime.bigint();
  dd('usr.erofs', slot[0]!.offset);
  dd('usr.verity', slot[1]!.offset);
  const ddSeconds = seconds(start);
  start = process.hrtime.bigint();
  const check = await verifyImage({ path: host.disk, offset: slot[0]!.offset }, { path: host.disk, offset: slot[1]!.offset }, manifest.usr.rootHash);
  const verifySeconds = seconds(start);
  if (!check.ok) throw new Error(check.message);

  const size = manifest.artifacts['usr.erofs']!.size + manifest.artifacts['usr.verity']!.size;
  process.stdout.write(`update ${oldBuild} → ${newBuild}: slot images ${mib(size)}\n`);
  process.stdout.write(
    `cairn agent (loopback download ${mib(outcome.downloadedBytes)} of ${mib(outcome.fullBytes)}, write, verify, install)  ${agentSeconds.toFixed(2)} s\n`,
  );
  process.stdout.write(
    `dd of the new images into the slot (conv=fsync)                              ${ddSeconds.toFixed(2)} s   cairn/dd = ${(agentSeconds / ddSeconds).toFixed(2)}\n`,
  );
  process.stdout.write(
    `dd + cairn's full verity check                                                ${(ddSeconds + verifySeconds).toFixed(2)} s   cairn/(dd+verify) = ${(agentSeconds / (ddSeconds + verifySeconds)).toFixed(2)}\n`,
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
