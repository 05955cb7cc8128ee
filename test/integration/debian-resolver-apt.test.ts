// cairn's resolver against apt's own on the real Debian archive: apt-get, in an isolated
// configuration with an empty dpkg status, downloads trixie's index; cairn parses the very file
// apt downloaded and resolves the same requests; both must choose the same names and versions.
//
// Both run with Essential packages off: on an empty status apt treats nothing as installed and
// pulls in Essential packages only when something depends on them, which is exactly
// cairn's `essential: false`. Recommends are off on both sides (cairn never follows them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parsePackagesIndex } from '../../src/debian/packages-index.js';
import { resolve } from '../../src/debian/resolver.js';

const run = promisify(execFile);
const keyring = fileURLToPath(new URL('../../../keyrings/debian-archive-keyring.gpg', import.meta.url));

const REQUESTS = [
  ['systemd'],
  ['nodejs'],
  ['linux-image-cloud-amd64', 'tiny-initramfs'],
  ['busybox-static'],
  ['systemd', 'udev', 'dbus', 'iproute2', 'kmod', 'ca-certificates', 'nodejs', 'systemd-boot-efi'],
  // Alternatives, virtual packages and Provides with versions, beyond the recipes' needs.
  ['openssh-server', 'sudo', 'curl', 'python3'],
  ['default-mta', 'cron'],
  // A large desktop set: hundreds of packages, many virtual names and alternatives.
  ['gnome-core'],
];

function aptOptions(root: string): string[] {
  const options: Record<string, string> = {
    'Dir::State': join(root, 'state'),
    'Dir::State::status': join(root, 'status'),
    'Dir::Cache': join(root, 'cache'),
    'Dir::Log': join(root, 'log'),
    'Dir::Etc': join(root, 'etc'),
    'Dir::Etc::sourcelist': join(root, 'etc/sources.list'),
    'Dir::Etc::sourceparts': '-',
    'Dir::Etc::parts': join(root, 'etc/apt.conf.d'),
    'Dir::Etc::preferencesparts': join(root, 'etc/preferences.d'),
    'Dir::Etc::trustedparts': join(root, 'etc/trusted.gpg.d'),
    'APT::Architecture': 'amd64',
    'APT::Architectures::': 'amd64',
    'APT::Install-Recommends': 'false',
    'Debug::NoLocking': '1',
    'Acquire::Languages': 'none',
    // Keep the downloaded index as plain text, so that cairn reads exactly what apt read.
    'Acquire::GzipIndexes': 'false',
  };
  return Object.entries(options).flatMap(([key, value]) => ['-o', `${key}=${value}`]);
}

async function makeAptRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'cairn-apt-'));
  for (const dir of ['state/lists/partial', 'cache/archives/partial', 'log', 'etc/apt.conf.d', 'etc/preferences.d', 'etc/trusted.gpg.d']) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await writeFile(join(root, 'status'), '');
  await writeFile(join(root, 'etc/sources.list'), `deb [signed-by=${keyring}] http://deb.debian.org/debian trixie main\n`);
  return root;
}

/** name → version of every package `apt-get install --simulate` would unpack. */
async function aptWouldInstall(root: string, packages: string[]): Promise<Map<string, string>> {
  const { stdout } = await run('apt-get', [...aptOptions(root), 'install', '--simulate', '--no-install-recommends', '-q', ...packages], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const chosen = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^Inst (\S+) \((\S+) /.exec(line);
    if (m !== null) chosen.set(m[1]!, m[2]!);
  }
  return chosen;
}

test('cairn resolves package sets exactly as apt-get does on the real trixie archive', { timeout: 600_000 }, async (t) => {
  const root = await makeAptRoot();
  t.after(() => rm(root, { recursive: true, force: true }));
  try {
    await run('apt-get', [...aptOptions(root), 'update', '-q'], { timeout: 300_000 });
  } catch (err) {
    t.skip(`apt-get update cannot reach http://deb.debian.org/debian: ${(err as Error).message.split('\n')[0]}`);
    return;
  }
  const lists = join(root, 'state/lists');
  const indexName = (await readdir(lists)).find((name) => name.endsWith('_main_binary-amd64_Packages'));
  assert.ok(indexName, 'apt-get update left no plain Packages list');
  const universe = parsePackagesIndex(await readFile(join(lists, indexName), 'utf8'), { origin: indexName });
  assert.ok(universe.length > 50_000, `the trixie main index has only ${universe.length} packages`);

  for (const packages of REQUESTS) {
    await t.test(packages.join(' '), async () => {
      const expected = await aptWouldInstall(root, packages);
      assert.ok(expected.size > 0, 'apt chose nothing');
      const result = resolve({ packages, architecture: 'amd64', essential: false, priority: 'none', suite: 'trixie' }, universe);
      const actual = new Map(result.packages.map(({ record }) => [record.name, record.version]));
      const sorted = (m: Map<string, string>) => [...m].map(([name, version]) => `${name} ${version}`).sort();
      assert.deepEqual(sorted(actual), sorted(expected));
    });
  }
});
