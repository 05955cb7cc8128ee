// First-boot provisioning applied to a host root made in the test (as root: owners are real):
// accounts, homes and SSH keys, files with verified contents, directories, links and units
// enabled as systemctl would; a config that fails part-way changes nothing; planted symlinks
// cannot lead a write out of the root; a cut before the record is applied again whole; and the
// sources (fw_cfg's sysfs file, an IMDSv2 metadata service on loopback).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PROVISIONED } from '../../src/provision/apply.js';
import { provisionFirstBoot } from '../../src/provision/first-boot.js';
import { fromConfigDrive, fromFwCfg, fromMetadata, FW_CFG_NAME } from '../../src/provision/sources.js';
import { needs } from '../fixtures/requirements.js';

const run = promisify(execFile);
const asRoot = needs({ root: 'owners of provisioned files' });
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8k9V1s3uV3h2cNQ2g5m0yP2r0yq3wzV1fF6j0bQ3x ops@example';
const HASH = '$y$j9T$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDE';
const APP_TOML = '[server]\nport = 8080\n';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-provision-'));
});
after(() => rm(work, { recursive: true, force: true }));

/** A host root as a cairn image's first boot has it: /etc from the factory copy, units in /usr. */
async function hostRoot(name: string): Promise<string> {
  const root = join(work, name);
  const files: Record<string, string> = {
    'etc/passwd': 'root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000:cairn administrator:/home/admin:/bin/bash\n',
    'etc/shadow': 'root:*:20000:0:99999:7:::\nadmin:!:20000:0:99999:7:::\n',
    'etc/group': 'root:x:0:\nshadow:x:42:\nsudo:x:27:admin\nadmin:x:1000:\n',
    'etc/gshadow': 'root:*::\nshadow:*::\nsudo:*::admin\nadmin:!::\n',
    'etc/hostname': 'cairn\n',
    'usr/share/factory/etc/hostname': 'cairn\n',
    'etc/motd': "the host's own\n",
    'usr/lib/systemd/system/systemd-timesyncd.service': '[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=sysinit.target\n',
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  for (const dir of ['home', 'root', 'var/lib', 'etc/systemd/system']) await mkdir(join(root, dir), { recursive: true });
  return root;
}

const CONFIG = {
  ignition: { version: '3.4.0' },
  passwd: {
    users: [
      { name: 'ops', passwordHash: HASH, sshAuthorizedKeys: [KEY], groups: ['sudo', 'deploy'] },
      { name: 'admin', sshAuthorizedKeys: [KEY] },
    ],
    groups: [{ name: 'deploy', gid: 2000 }],
  },
  storage: {
    files: [
      { path: '/etc/hostname', mode: 420, contents: { source: 'data:,web-1%0A' } },
      {
        path: '/etc/app/config.toml',
        mode: 384,
        user: { name: 'ops' },
        group: { name: 'deploy' },
        contents: {
          source: `data:;base64,${Buffer.from(APP_TOML).toString('base64')}`,
          verification: { hash: `sha512-${createHash('sha512').update(APP_TOML).digest('hex')}` },
        },
      },
    ],
    directories: [{ path: '/var/lib/app', mode: 488, user: { name: 'ops' } }],
    links: [{ path: '/etc/app/current', target: '/var/lib/app' }],
  },
  systemd: {
    units: [
      { name: 'app.service', enabled: true, contents: '[Service]\nExecStart=/usr/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n' },
      { name: 'systemd-timesyncd.service', dropins: [{ name: '10-ntp.conf', contents: '[Time]\nNTP=ntp.example\n' }] },
      { name: 'apt-daily.timer', mask: true },
    ],
  },
};

const provision = (root: string, config: unknown) => provisionFirstBoot({ root, live: false, config: { source: 'test', text: JSON.stringify(config) } });

/** Every file under `root` with its bytes, mode and owner: what "nothing changed" compares. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = lstatSync(path);
      out.push(
        `${path.slice(root.length)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : st.isSymbolicLink() ? readlinkSync(path) : ''}`,
      );
      if (st.isDirectory()) walk(path);
    }
  };
  walk(root);
  return out;
}

test('a config provisions users, keys, files, directories, links and units on the host root', asRoot, async () => {
  const root = await hostRoot('full');
  const outcome = await provision(root, CONFIG);
  assert.equal(outcome.status, 'provisioned');
  const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8');
  assert.match(passwd, /^ops:x:1001:1001::\/home\/ops:\/bin\/bash$/m);
  assert.match(passwd, /^admin:x:1000:1000:cairn administrator:\/home\/admin:\/bin\/bash$/m);
  assert.match(readFileSync(join(root, 'etc/shadow'), 'utf8'), new RegExp(`^ops:${HASH.replace(/\$/g, '\\$')}:`, 'm'));
  assert.match(readFileSync(join(root, 'etc/group'), 'utf8'), /^sudo:x:27:admin,ops$/m);
  assert.match(readFileSync(join(root, 'etc/group'), 'utf8'), /^deploy:x:2000:ops$/m);
  for (const [user, uid] of [
    ['ops', 1001],
    ['admin', 1000],
  ] as const) {
    const keys = join(root, 'home', user, '.ssh/authorized_keys');
    assert.equal(readFileSync(keys, 'utf8'), `${KEY}\n`);
    assert.deepEqual([statSync(keys).mode & 0o777, statSync(keys).uid, statSync(join(root, 'home', user)).mode & 0o777], [0o600, uid, 0o700]);
  }
  assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'web-1\n', "the image's default hostname gives way");
  const toml = join(root, 'etc/app/config.toml');
  assert.deepEqual([readFileSync(toml, 'utf8'), statSync(toml).mode & 0o777, statSync(toml).uid, statSync(toml).gid], [APP_TOML, 0o600, 1001, 2000]);
  assert.deepEqual([statSync(join(root, 'var/lib/app')).mode & 0o777, statSync(join(root, 'var/lib/app')).uid], [0o750, 1001]);
  assert.equal(readlinkSync(join(root, 'etc/app/current')), '/var/lib/app');
  assert.equal(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/app.service')), '/etc/systemd/system/app.service');
  assert.equal(readFileSync(join(root, 'etc/systemd/system/systemd-timesyncd.service.d/10-ntp.conf'), 'utf8'), '[Time]\nNTP=ntp.example\n');
  assert.equal(readlinkSync(join(root, 'etc/systemd/system/apt-daily.timer')), '/dev/null');
  const record = JSON.parse(readFileSync(join(root, PROVISIONED), 'utf8'));
  assert.deepEqual([record.source, record.users, record.toStart, record.hostname], ['test', ['ops', 'admin'], ['app.service'], 'web-1']);
  assert.equal(statSync(join(root, PROVISIONED)).mode & 0o777, 0o600);
  // A second boot does not provision again, whatever it is given.
  const before = snapshot(root);
  assert.deepEqual(await provision(root, { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x', contents: { source: 'data:,y' } }] } }), {
    status: 'already-provisioned',
  });
  assert.deepEqual(snapshot(root), before);
});

const failing: [string, (root: string) => Promise<unknown>, RegExp][] = [
  [
    'a wrong verification hash',
    async () => ({ ...CONFIG, storage: { files: [{ path: '/etc/a', contents: { source: 'data:,a', verification: { hash: `sha256-${'0'.repeat(64)}` } } }] } }),
    /storage\.files\[0\] \(\/etc\/a\): the data: URL has sha256 .* but the config's verification\.hash says 0{64}/,
  ],
  [
    "a file that is the host's own",
    async () => ({ ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/motd', contents: { source: 'data:,x' } }] } }),
    /\/etc\/motd\) already exists on the host/,
  ],
  [
    "a link over the host's own without overwrite",
    async (root) => {
      await symlink('/usr/share/zoneinfo/UTC', join(root, 'etc/localtime'));
      return { ignition: { version: '3.4.0' }, storage: { links: [{ path: '/etc/localtime', target: '/usr/share/zoneinfo/Europe/Berlin' }] } };
    },
    /storage\.links\[0\] \(\/etc\/localtime\) already exists on the host/,
  ],
  [
    'an unknown owner',
    async () => ({ ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/a', user: { name: 'nobody2' } }] } }),
    /user nobody2 does not exist/,
  ],
  [
    'a uid taken by another user',
    async () => ({ ignition: { version: '3.4.0' }, passwd: { users: [{ name: 'ops', uid: 1000 }] } }),
    /uid 1000 is already used on the host/,
  ],
  [
    'a planted absolute symlink on the way',
    async (root) => {
      await symlink('/usr', join(root, 'etc/app'));
      return { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/app/evil', contents: { source: 'data:,x' } }] } };
    },
    /storage\.files\[0\] \(\/etc\/app\/evil\): \/etc\/app\/evil: it goes through the symlink \/etc\/app -> \/usr, an absolute link/,
  ],
  [
    'a planted relative symlink that climbs out',
    async (root) => {
      await symlink('../../../..', join(root, 'etc/up'));
      return { ignition: { version: '3.4.0' }, storage: { directories: [{ path: '/etc/up/escaped' }] } };
    },
    /storage\.directories\[0\] \(\/etc\/up\/escaped\): \/etc\/up\/escaped: a symlink on the way leads above the root of the tree/,
  ],
];

for (const [what, make, error] of failing) {
  test(`a config with ${what} fails before it changes anything`, asRoot, async () => {
    const root = await hostRoot(what.replace(/\W+/g, '-'));
    const config = await make(root);
    const before = snapshot(root);
    await assert.rejects(provision(root, config), error);
    assert.deepEqual(snapshot(root), before);
    assert.ok(!existsSync(join(root, PROVISIONED)));
  });
}

test('cut before the record, the next boot applies the whole config again over what it had written', asRoot, async () => {
  const root = await hostRoot('cut');
  await provision(root, CONFIG);
  const done = snapshot(root).filter((l) => !l.startsWith(`/${PROVISIONED}`));
  await rm(join(root, PROVISIONED));
  const again = await provision(root, CONFIG);
  assert.equal(again.status, 'provisioned');
  assert.deepEqual(
    snapshot(root)
      .filter((l) => !l.startsWith(`/${PROVISIONED}`))
      .map((l) => l.replace(/^\/etc\/(shadow|gshadow) .*/, '$1')),
    done.map((l) => l.replace(/^\/etc\/(shadow|gshadow) .*/, '$1')),
  );
});

test('fw_cfg: the config is read from its sysfs file, and its absence means no config', async () => {
  const sysfs = join(work, 'fw_cfg');
  assert.equal(await fromFwCfg(sysfs), null);
  await mkdir(join(sysfs, 'by_name', FW_CFG_NAME), { recursive: true });
  await writeFile(join(sysfs, 'by_name', FW_CFG_NAME, 'raw'), '{"ignition":{"version":"3.4.0"}}');
  assert.deepEqual(await fromFwCfg(sysfs), { source: `fw_cfg ${FW_CFG_NAME}`, text: '{"ignition":{"version":"3.4.0"}}' });
});

test('metadata service: IMDSv2 token then user-data; 404 is no config; a token refusal is an error', async () => {
  let userData: string | null = '{"ignition":{"version":"3.4.0"}}';
  let tokens = true;
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers['x-aws-ec2-metadata-token'] ?? ''}`);
    if (req.method === 'PUT' && req.url === '/latest/api/token' && tokens && req.headers['x-aws-ec2-metadata-token-ttl-seconds']) {
      res.end('tok-1');
    } else if (req.method === 'GET' && req.url === '/latest/user-data' && req.headers['x-aws-ec2-metadata-token'] === 'tok-1') {
      if (userData === null) res.statusCode = 404;
      res.end(userData ?? '');
    } else {
      res.statusCode = 401;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    assert.deepEqual(await fromMetadata(base), { source: `metadata service ${base}`, text: userData });
    assert.deepEqual(seen, ['PUT /latest/api/token ', 'GET /latest/user-data tok-1']);
    userData = null;
    assert.equal(await fromMetadata(base), null);
    tokens = false;
    await assert.rejects(fromMetadata(base), /api\/token: HTTP 401/);
  } finally {
    server.close();
  }
});

test('config drive: a file system labelled cidata is found, mounted read-only and its user-data read', asRoot, async () => {
  const seed = join(work, 'seed');
  await mkdir(seed, { recursive: true });
  await writeFile(join(seed, 'user-data'), '{"ignition":{"version":"3.4.0"}}');
  const image = join(work, 'seed.img');
  await run('mke2fs', ['-q', '-t', 'ext4', '-L', 'cidata', '-d', seed, image, '8M']);
  const device = (await run('losetup', ['--find', '--show', '--read-only', image])).stdout.trim();
  try {
    const found = await fromConfigDrive();
    assert.deepEqual(found, { source: `config drive ${device} (cidata) user-data`, text: '{"ignition":{"version":"3.4.0"}}' });
  } finally {
    await run('losetup', ['--detach', device]);
  }
});
