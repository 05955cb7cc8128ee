// The update agent end to end, in QEMU with OVMF: the default recipe with an update section is
// built in three versions and the test host serves a repository on loopback (the guest reaches
// it as 10.0.2.2). v1 boots from its disk, its agent finds v2 on the channel, downloads only the
// chunks it lacks, writes slot B and reboots; v2 boots, passes its health check and is blessed.
// Then v3, whose health check fails, is promoted: the host tries it until the boot counter runs
// out and comes back on v2, which records v3 as bad. Every step is read from the serial console
// (the agent's units log there too), and the final state from the agent's state file.
// A reboot of the guest ends QEMU (-no-reboot); the test starts it again on the same disk.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { sha256File } from '../../src/hash-file.js';
import { readGpt } from '../../src/image/gpt.js';
import { promote } from '../../src/release/channel-ops.js';
import { publishRelease } from '../../src/release/publish.js';
import { startStaticServer } from '../../src/release/static-server.js';
import { generateTestKey } from '../fixtures/debian-repo.js';
import { freePort } from './free-port.js';
import { SerialConsole } from './serial-console.js';
import { copySparse } from './disk-copy.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const baseRecipe = fileURLToPath(new URL('../../../recipes/container-host.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root';
const work = await mkdtemp(join(tmpdir(), 'cairn-e2e-agent-'));
after(() => rm(work, { recursive: true, force: true }));

/** The default recipe with an update section, an agent configuration for the test, and a health check that passes or not. */
async function recipeFor(version: string, healthy: boolean, port: number, pubKey: string): Promise<string> {
  const recipe = parse(await readFile(baseRecipe, 'utf8')) as Record<string, unknown> & { files: unknown[]; kernel: { config: string } };
  recipe.version = version;
  recipe.kernel.config = fileURLToPath(new URL('../../../kernel-configs/container-host.config', import.meta.url));
  recipe.update = { repository: `http://10.0.2.2:${port}`, channel: 'stable', keys: [pubKey] };
  recipe.files.push(
    {
      path: '/usr/lib/cairn-e2e/health',
      mode: '0755',
      content: `#!/bin/sh\necho "cairn-e2e: health check of ${version}: ${healthy ? 'ok' : 'failing'}"\nexit ${healthy ? 0 : 1}\n`,
    },
    {
      path: '/etc/cairn/agent.yaml',
      mode: '0644',
      content: `repository: http://10.0.2.2:${port}\nchannel: stable\nkeys: [keys/release.pub.asc]\npoll-interval: 5s\nstrategy: {type: immediate}\nhealth:\n  timeout: 20s\n  commands:\n    - {command: [/usr/lib/cairn-e2e/health], timeout: 10s}\n`,
    },
    // The agent's JSON log lines on the serial console, where the test reads them.
    ...['cairn-agent.service', 'cairn-agent-check.service'].map((unit) => ({
      path: `/usr/lib/systemd/system/${unit}.d/console.conf`,
      mode: '0644',
      content: '[Service]\nStandardError=journal+console\n',
    })),
  );
  const path = join(work, `container-host-${version}.yaml`);
  await writeFile(path, stringify(recipe));
  return path;
}

/** What the ESP holds (for a boot that never left the firmware): its files and the UKIs' SHA-256. */
async function espReport(disk: string): Promise<string> {
  const esp = (await readGpt(disk)).partitions.find((p) => p.label === 'esp');
  if (!esp) return 'no ESP partition';
  const image = `${disk}@@${esp.offset}`;
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  const listing = await run('mdir', ['-/', '-i', image, '::/'], { env }).then(
    (r) => r.stdout,
    (e: Error) => e.message,
  );
  const out = join(work, 'esp-report.efi');
  const ukis = [];
  for (const name of listing.match(/\S+\.efi$/gm) ?? []) {
    const sum = await run('mcopy', ['-n', '-i', image, `::/EFI/Linux/${name}`, out], { env }).then(
      () => sha256File(out),
      () => null,
    );
    ukis.push(`${name}: ${sum?.toString('hex') ?? 'unreadable'}`);
  }
  const space = await run('df', ['-h', work]).then(
    (r) => r.stdout,
    (e: Error) => e.message,
  );
  return `ESP at ${esp.offset}:\n${listing}\n${ukis.join('\n')}\n${space}`;
}

test(
  'v1 updates itself to v2 by delta and blesses it; v3 fails its checks, runs out of tries and is recorded as bad',
  { skip, timeout: 3_600_000 },
  async (t) => {
    const port = await freePort();
    const key = await generateTestKey('cairn e2e repository');
    const pubKey = join(work, 'release.pub.asc');
    await writeFile(pubKey, key.toPublic().armor());
    const builds: Record<string, string> = {};
    for (const [version, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['1.2.0', false],
    ] as const) {
      await run(process.execPath, [cli, 'build', await recipeFor(version, healthy, port, pubKey), '--out', join(work, 'images'), '--json'], {
        maxBuffer: 1 << 24,
      });
      builds[version] = join(work, 'images', 'container-host', version);
    }
    const manifest = async (v: string) => JSON.parse(await readFile(join(builds[v]!, 'manifest.json'), 'utf8'));
    const repo = join(work, 'repo');
    for (const v of ['1.0.0', '1.1.0', '1.2.0']) await publishRelease({ buildDir: builds[v]!, repoDir: repo, key });
    await promote({ repoDir: repo, name: 'container-host', key, version: '1.1.0', channel: 'stable' });
    const requests: string[] = [];
    const server = await startStaticServer(repo, '127.0.0.1', port, (line) => requests.push(line));
    const disk = join(work, 'disk.raw');
    // A host as a fleet has it: provisioned on its first boot, its root grown to a larger disk.
    await copySparse(join(builds['1.0.0']!, 'disk.raw'), disk, 1 << 30);
    const ignition = join(work, 'host.ign');
    await writeFile(
      ignition,
      JSON.stringify({ ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/e2e-provisioned', contents: { source: 'data:,yes' } }] } }),
    );

    const boots: string[] = [];
    /** Boots the disk, hands the console to `during`, and waits for QEMU to end (the guest rebooting). */
    const boot = async (during: (guest: SerialConsole) => Promise<void>, stop = false): Promise<string> => {
      let guest = await SerialConsole.boot({ disk, network: true, ignition });
      try {
        let verity = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on \/dev\/vda\d+ \(hash/, 300_000).catch((err: Error) => err);
        if (verity instanceof Error && /QEMU exited before/.test(verity.message) && !/cairn-init/.test(guest.output)) {
          // Seen once under heavy load: the firmware showed systemd-boot's menu without entries and
          // left. Nothing of cairn ran, so power the machine on again once, and say so.
          t.diagnostic(
            `firmware did not reach cairn-init; powering on again:\n${guest.output.slice(-1500)}\n${await espReport(disk).catch((e: Error) => e.message)}`,
          );
          guest = await SerialConsole.boot({ disk, network: true, ignition });
          verity = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on \/dev\/vda\d+ \(hash/, 300_000);
        }
        if (verity instanceof Error) throw verity;
        const [, hash] = verity;
        boots.push(hash!);
        await during(guest);
        if (stop) await guest.kill();
        else await guest.exit(300_000);
        return hash!;
      } catch (err) {
        t.diagnostic(`console, cairn lines:\n${guest.lines(/cairn/, 8000)}\nconsole end:\n${guest.output.slice(-2000)}`);
        throw err;
      } finally {
        await guest.kill();
      }
    };
    const v = {
      '1.0.0': (await manifest('1.0.0')).usr.rootHash,
      '1.1.0': (await manifest('1.1.0')).usr.rootHash,
      '1.2.0': (await manifest('1.2.0')).usr.rootHash,
    };

    try {
      // Power cuts (QEMU killed): while the agent streams v2 into slot B, and right after it
      // renamed the slot but before the UKI is on the ESP. Each time v1 boots again, verified, and
      // the agent resumes the transaction from its saved step.
      await boot(async (guest) => {
        await guest.waitFor(/cairn: provisioning from fw_cfg opt\/com\.coreos\/config/, 600_000);
        await guest.waitFor(/grew \/dev\/vda partition 6 at \d+\.\d+ GiB/, 600_000);
        const [plan] = await guest.waitFor(/\{"time":"[^"]+","event":"delta-plan"[^\n{}]*\}/, 900_000);
        const { downloadBytes, fullBytes } = JSON.parse(plan!) as { downloadBytes: number; fullBytes: number };
        assert.ok(downloadBytes < fullBytes / 5, `a delta: ${downloadBytes} of ${fullBytes} bytes`);
        await guest.waitFor(/"event":"step","step":"writing","version":"1\.1\.0"/, 900_000);
      }, true);
      await boot(async (guest) => {
        await guest.waitFor(/"event":"resume","step":"writing","version":"1\.1\.0"/, 900_000);
        // The verity tree is computed from the slot just written, not downloaded.
        await guest.waitFor(/"event":"verity-computed","version":"1\.1\.0"/, 900_000);
        await guest.waitFor(/"event":"step","step":"renamed","version":"1\.1\.0"/, 900_000);
      }, true);
      // v1: up, its agent finishes v2 in slot B and reboots.
      await boot(async (guest) => {
        await guest.waitFor(/Reached target[^\n]*multi-user\.target/, 600_000);
        await guest.waitFor(/"event":"resume","step":"(renamed|installed)","version":"1\.1\.0"/, 900_000);
        await guest.waitFor(/"event":"outcome","status":"installed","version":"1.1.0"/, 900_000);
        await guest.waitFor(/"event":"reboot"/, 120_000);
      });
      const chunkBytes = requests.filter((r) => /^GET \/(chunks|patches)\//.test(r)).reduce((s, r) => s + Number(r.split(' ').at(-1)), 0);
      t.diagnostic(`v1 → v2 downloaded ${chunkBytes} bytes of chunks and patches`);
      const slotB = (await readGpt(disk)).partitions.find((p) => p.label === 'usr-B')!;
      assert.equal(
        slotB.uuid,
        `${v['1.1.0'].slice(0, 8)}-${v['1.1.0'].slice(8, 12)}-${v['1.1.0'].slice(12, 16)}-${v['1.1.0'].slice(16, 20)}-${v['1.1.0'].slice(20, 32)}`,
      );

      // v2: boots from slot B, passes its check, is blessed; then v3 is promoted and installed into slot A.
      await boot(async (guest) => {
        await guest.waitFor(/"event":"health","version":"1\.1\.0","ok":true/, 600_000);
        await guest.waitFor(/"event":"after-boot","status":"blessed","version":"1\.1\.0"/, 300_000);
        await promote({ repoDir: repo, name: 'container-host', key, version: '1.2.0', channel: 'stable' });
        await guest.waitFor(/"event":"outcome","status":"installed","version":"1\.2\.0"/, 900_000);
      });

      // v3: three tries, each failing its check and rebooting.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const hash = await boot(async (guest) => {
          await guest.waitFor(/"event":"after-boot","status":"unhealthy","version":"1\.2\.0"/, 600_000);
        });
        assert.equal(hash, v['1.2.0'], `try ${attempt} boots v3`);
      }
      // Out of tries: systemd-boot boots v2 again, whose agent records v3 as bad.
      const back = await boot(async (guest) => {
        await guest.waitFor(/"event":"rolled-back","bad":"1\.2\.0","running":"1\.1\.0"/, 600_000);
        await guest.waitFor(/"event":"outcome","status":"up-to-date","reason":"1\.2\.0 failed on this host before"/, 300_000);
      }, true);
      assert.equal(back, v['1.1.0']);
      assert.deepEqual(boots, [v['1.0.0'], v['1.0.0'], v['1.0.0'], v['1.1.0'], v['1.2.0'], v['1.2.0'], v['1.2.0'], v['1.1.0']]);
    } finally {
      await server.close();
    }
  },
);
