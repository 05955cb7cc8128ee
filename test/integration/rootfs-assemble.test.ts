// Assembles root trees from generated .debs as root (owners and setuid bits are kept), checks
// what lands where, that hostile packages are refused without writing outside the tree, and
// that the same inputs give byte-identical tars.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tar from 'tar-stream';
import type { LockedPackage } from '../../src/debian/types.js';
import { CairnError } from '../../src/errors.js';
import type { Recipe } from '../../src/recipe/types.js';
import { type AssemblyReport, assembleRoot } from '../../src/rootfs/assemble.js';
import type { DebInput } from '../../src/rootfs/extract.js';
import { writeTreeTar } from '../../src/rootfs/tree-tar.js';
import { type DebEntry, arArchive, compress, controlText, makeDeb, makeTar } from '../fixtures/make-deb.js';

const EPOCH = 1_720_000_000;
const isRoot = process.getuid?.() === 0;
const asRoot = { skip: isRoot ? false : 'assembling a root tree needs root' };

let work: string;
let sentinel: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-rootfs-'));
  sentinel = join(work, 'sentinel');
  await mkdir(sentinel);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
const fresh = (what: string) => join(work, 'nest', 'deep', `${what}-${counter++}`);

async function deb(name: string, files: DebEntry[], control: Record<string, string> = {}): Promise<DebInput> {
  const data = await makeDeb({
    control: { Package: name, Version: '1.0', Architecture: 'amd64', 'Installed-Size': '64', ...control },
    files,
    compression: 'gz',
  });
  const path = join(work, `${name}-${counter++}.deb`);
  await writeFile(path, data);
  const pkg: LockedPackage = {
    name,
    version: '1.0',
    architecture: 'amd64',
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    filename: `pool/main/${name}.deb`,
  };
  return { pkg, path };
}

function recipe(over: Partial<Recipe> = {}): Recipe {
  return {
    file: join(work, 'test.yaml'),
    name: 'test-image',
    version: '1.2.3',
    description: '',
    base: {
      suite: 'trixie',
      extraSuites: [],
      mirror: 'http://deb.debian.org/debian',
      components: ['main'],
      architecture: 'amd64',
      keyring: '/dev/null',
      essential: false,
      priority: 'none',
    },
    packages: [],
    kernel: { package: 'linux-image-cloud-amd64', config: '/dev/null' },
    init: '/usr/lib/systemd/systemd',
    hostname: 'test-host',
    users: [],
    groups: [],
    files: [],
    units: { enable: [], mask: [] },
    alternatives: [],
    links: [],
    disk: { esp: 0, usr: 0, usrVerity: 0, root: 0, usrCompression: null },
    update: null,
    containers: [],
    ...over,
  };
}

async function assemble(debs: DebInput[], over: Partial<Recipe> = {}): Promise<{ root: string; report: AssemblyReport }> {
  const root = fresh('root');
  const report = await assembleRoot({ recipe: recipe(over), debs, outDir: root, sourceDateEpoch: EPOCH });
  return { root, report };
}

function namesUnder(dir: string, prefix: string): string[] {
  const found: string[] = [];
  const visit = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (name.startsWith(prefix)) found.push(p);
      if (lstatSync(p).isDirectory()) visit(p);
    }
  };
  visit(dir);
  return found;
}

/** Assembly must fail with `expected`, leave no output, and write nothing outside it. */
async function assertRefused(debs: DebInput[], expected: RegExp, over: Partial<Recipe> = {}): Promise<void> {
  const root = fresh('refused');
  const err = await assembleRoot({ recipe: recipe(over), debs, outDir: root, sourceDateEpoch: EPOCH }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
  assert.match(err.message, expected);
  assert.equal(existsSync(root), false, 'the half-built tree is removed');
  assert.deepEqual(readdirSync(sentinel), [], 'nothing was written into the sentinel directory');
  assert.deepEqual(namesUnder(work, 'escaped'), [], 'nothing escaped the tree');
  assert.equal(existsSync('/escaped'), false);
}

test('hostile packages are refused and nothing lands outside the tree', asRoot, async () => {
  await assertRefused(
    [await deb('dots', [{ path: './../../escaped-dots', content: 'x' }])],
    /^dots 1\.0 \(.*\): entry "\.\/\.\.\/\.\.\/escaped-dots": the path contains a "\.\." component$/,
  );
  await assertRefused(
    [await deb('absolute', [{ path: `${sentinel}/escaped-abs`, content: 'x' }])],
    /^absolute 1\.0 .*: entry ".*\/sentinel\/escaped-abs": the path is absolute$/,
  );
  await assertRefused(
    [
      await deb('abs-link', [
        { path: './usr/lib/evil', type: 'symlink', linkname: sentinel },
        { path: './usr/lib/evil/escaped-through-link', content: 'x' },
      ]),
    ],
    /entry "\.\/usr\/lib\/evil\/escaped-through-link": it goes through the symlink \/usr\/lib\/evil -> .*sentinel, an absolute link, which is never followed while writing$/,
  );
  await assertRefused(
    [
      await deb('etc-link', [
        { path: './usr/lib/x', type: 'symlink', linkname: '/etc' },
        { path: './usr/lib/x/escaped-passwd', content: 'root::0:0::/:/bin/sh\n' },
      ]),
    ],
    /goes through the symlink \/usr\/lib\/x -> \/etc, an absolute link/,
  );
  await assertRefused(
    [
      await deb('rel-link', [
        { path: './usr/lib/up', type: 'symlink', linkname: '../../../../../../../../../../../sentinel' },
        { path: './usr/lib/up/escaped-rel', content: 'x' },
      ]),
    ],
    /entry "\.\/usr\/lib\/up\/escaped-rel": a symlink on the way leads above the root of the tree$/,
  );
  await assertRefused(
    [await deb('hardlink-out', [{ path: './usr/bin/escaped-hl', type: 'link', linkname: '../../../../etc/passwd' }])],
    /entry "\.\/usr\/bin\/escaped-hl": the path contains a "\.\." component$/,
  );
  await assertRefused(
    [await deb('hardlink-abs', [{ path: './usr/bin/escaped-hl', type: 'link', linkname: '/etc/hostname' }])],
    /the hard link target \/etc\/hostname is absolute$/,
  );
  await assertRefused(
    [await deb('hardlink-foreign', [{ path: './usr/bin/escaped-hl', type: 'link', linkname: './usr/bin/nothing' }])],
    /the hard link target \.\/usr\/bin\/nothing is not a file this package placed before$/,
  );
  await assertRefused(
    [await deb('too-big', [{ path: './usr/share/escaped-big', content: Buffer.alloc(3 << 20) }], { 'Installed-Size': '1' })],
    /entry "\.\/usr\/share\/escaped-big": the file is 3145728 bytes, which takes the package past what it declares \(Installed-Size: 1 KiB\)$/,
  );
  await assertRefused(
    [await deb('lying-size', [{ path: './usr/share/escaped-lie', content: 'small', size: 5 << 20 }], { 'Installed-Size': '2' })],
    /the file is 5242880 bytes, which takes the package past what it declares/,
  );
  await assertRefused(
    [await deb('bin-file', [{ path: './bin', content: 'x' }])],
    /entry "\.\/bin": \/bin must be the link bin -> usr\/bin in a merged-\/usr tree$/,
  );
  await assertRefused(
    [
      await deb('over-dir', [
        { path: './usr/share/', type: 'directory' },
        { path: './usr/share', type: 'symlink', linkname: 'x' },
      ]),
    ],
    /entry "\.\/usr\/share": a directory is already there$/,
  );
  // A valid package that is not the one the lock names.
  const wrong = await deb('impostor', [{ path: './usr/bin/escaped-x', content: 'x' }]);
  await assertRefused([{ ...wrong, pkg: { ...wrong.pkg, name: 'trusted' } }], /expected Package trusted for trusted, the package says impostor$/);
});

test('the /usr merge, owners, modes, links and replaced files', asRoot, async () => {
  const first = await deb('first', [
    { path: './bin/', type: 'directory' },
    { path: './bin/sh', content: '#!shell\n', mode: 0o755 },
    { path: './sbin/su', content: 'su', mode: 0o4755 },
    { path: './lib/x86_64-linux-gnu/libfoo.so.1', content: 'lib' },
    { path: './usr/share/games/score', content: 'score', mode: 0o640, uid: 1234, gid: 60 },
    { path: './var/mail/', type: 'directory', mode: 0o2775, gid: 8 },
    { path: './usr/share/doc/real/', type: 'directory' },
    { path: './usr/share/doc/alias', type: 'symlink', linkname: 'real' },
    { path: './usr/share/doc/alias/copyright', content: 'c' },
    { path: './usr/bin/view', content: 'v', mode: 0o755 },
    { path: './usr/bin/vi', type: 'link', linkname: './usr/bin/view' },
    { path: './usr/share/shared', content: 'from first' },
  ]);
  const second = await deb('second', [
    { path: './bin', type: 'symlink', linkname: 'usr/bin' },
    { path: './usr/share/shared', content: 'from second' },
  ]);
  const { root, report } = await assemble([first, second]);

  assert.equal(readlinkSync(join(root, 'bin')), 'usr/bin');
  assert.equal(readlinkSync(join(root, 'sbin')), 'usr/sbin');
  assert.equal(readlinkSync(join(root, 'lib')), 'usr/lib');
  assert.equal(existsSync(join(root, 'lib64')), false, 'a merge link with nothing behind it is dropped');
  assert.equal(readFileSync(join(root, 'usr/bin/sh'), 'utf8'), '#!shell\n');
  assert.equal(readFileSync(join(root, 'usr/lib/x86_64-linux-gnu/libfoo.so.1'), 'utf8'), 'lib');

  const su = statSync(join(root, 'usr/sbin/su'));
  assert.equal(su.mode & 0o7777, 0o4755, 'setuid survives');
  const score = statSync(join(root, 'usr/share/games/score'));
  assert.deepEqual([score.uid, score.gid, score.mode & 0o7777], [1234, 60, 0o640]);
  const mail = lstatSync(join(root, 'var/mail'));
  assert.deepEqual([mail.gid, mail.mode & 0o7777], [8, 0o2775]);

  assert.equal(readlinkSync(join(root, 'usr/share/doc/alias')), 'real');
  assert.equal(readFileSync(join(root, 'usr/share/doc/real/copyright'), 'utf8'), 'c', 'relative links inside the tree are followed');
  const vi = statSync(join(root, 'usr/bin/vi'));
  assert.equal(vi.ino, statSync(join(root, 'usr/bin/view')).ino);
  assert.equal(vi.nlink, 2);

  assert.equal(readFileSync(join(root, 'usr/share/shared'), 'utf8'), 'from second');
  assert.deepEqual(report.overwrites, [{ path: '/usr/share/shared', previous: 'first', by: 'second' }]);
  assert.ok(report.packages[0].paths.includes('/usr/bin/sh'));
  assert.ok(report.packages[0].paths.includes('/usr/lib/x86_64-linux-gnu/libfoo.so.1'));
  for (const dir of ['dev', 'proc', 'sys', 'run', 'var', 'etc']) assert.ok(lstatSync(join(root, dir)).isDirectory(), dir);
  assert.equal(lstatSync(join(root, 'tmp')).mode & 0o7777, 0o1777);
  assert.equal(statSync(join(root, 'usr/bin/sh')).mtimeMs, EPOCH * 1000);
  assert.equal(lstatSync(join(root, 'bin')).mtimeMs, EPOCH * 1000);
});

const passwdMaster =
  'root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
const groupMaster = 'root:*:0:\ndaemon:*:1:\nshadow:*:42:\nusers:*:100:\nnogroup:*:65534:\n';

test('accounts: base-passwd, sysusers.d of packages, recipe users and groups', asRoot, async () => {
  const base = await deb('base-passwd', [
    { path: './usr/share/base-passwd/passwd.master', content: passwdMaster },
    { path: './usr/share/base-passwd/group.master', content: groupMaster },
  ]);
  const daemon = await deb('daemon-pkg', [
    {
      path: './usr/lib/sysusers.d/daemon-pkg.conf',
      content: [
        '# comment',
        'u foo - "Foo Daemon" /var/lib/foo',
        'g bar -',
        'u fixed 420 - - /bin/false',
        'u withgroup -:bar',
        'm foo bar',
        'u daemon 7 "should not replace base-passwd"',
        'g daemon 7',
      ].join('\n'),
    },
    { path: './usr/lib/sysusers.d/zz-second.conf', content: 'u foo 5 "ignored: foo is declared first"\ng early 500\n' },
  ]);
  const { root, report } = await assemble([base, daemon], {
    groups: [{ name: 'staff-x', gid: 1500 }],
    users: [
      {
        name: 'alice',
        uid: 1000,
        group: 'alice',
        groups: ['bar', 'staff-x'],
        home: '/home/alice',
        shell: '/bin/bash',
        gecos: 'Alice',
        password: '$y$j9T$salt$hash',
        sshAuthorizedKeys: [],
      },
    ],
  });
  const etc = join(root, 'usr/share/factory/etc');
  assert.deepEqual(readdirSync(join(root, 'etc')), [], '/etc is empty: the factory copy holds it');
  // Free ids go from 999 down in name order: group bar, then foo's own group (and uid), then
  // withgroup, whose primary group is bar.
  assert.equal(
    readFileSync(join(etc, 'passwd'), 'utf8'),
    [
      'root:x:0:0:root:/root:/bin/bash',
      'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
      'fixed:x:420:420::/:/bin/false',
      'withgroup:x:997:999::/:/usr/sbin/nologin',
      'foo:x:998:998:Foo Daemon:/var/lib/foo:/usr/sbin/nologin',
      'alice:x:1000:1000:Alice:/home/alice:/bin/bash',
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
      '',
    ].join('\n'),
  );
  assert.equal(
    readFileSync(join(etc, 'group'), 'utf8'),
    [
      'root:x:0:',
      'daemon:x:1:',
      'shadow:x:42:',
      'users:x:100:',
      'fixed:x:420:',
      'early:x:500:',
      'foo:x:998:',
      'bar:x:999:foo,alice',
      'alice:x:1000:',
      'staff-x:x:1500:alice',
      'nogroup:x:65534:',
      '',
    ].join('\n'),
  );
  const days = Math.floor(EPOCH / 86400);
  const shadow = readFileSync(join(etc, 'shadow'), 'utf8').split('\n');
  assert.equal(shadow[0], `root:*:${days}:0:99999:7:::`);
  assert.ok(shadow.includes(`foo:!*:${days}:0:99999:7:::`));
  assert.ok(shadow.includes(`alice:$y$j9T$salt$hash:${days}:0:99999:7:::`));
  const shadowStat = statSync(join(etc, 'shadow'));
  assert.deepEqual([shadowStat.mode & 0o7777, shadowStat.uid, shadowStat.gid], [0o640, 0, 42]);
  assert.ok(readFileSync(join(etc, 'gshadow'), 'utf8').includes('bar:!*::foo,alice\n'));
  assert.ok(report.users.includes('withgroup'));
});

test('accounts without base-passwd, and recipe conflicts', asRoot, async () => {
  const { root } = await assemble([await deb('empty', [])]);
  const etc = join(root, 'usr/share/factory/etc');
  assert.equal(readFileSync(join(etc, 'passwd'), 'utf8'), 'root:x:0:0:root:/root:/bin/sh\n');
  assert.equal(statSync(join(etc, 'shadow')).mode & 0o7777, 0o000, 'no shadow group: root alone');
  const user = { name: 'bob', uid: 0, group: 'bob', groups: [], home: '/home/bob', shell: '/bin/sh', gecos: '', password: null, sshAuthorizedKeys: [] };
  await assertRefused([await deb('empty', [])], /test\.yaml: user bob: uid 0 is already used in the image$/, { users: [user] });
  await assertRefused([await deb('empty', [])], /user bob: group wheel does not exist in the image$/, { users: [{ ...user, uid: 1000, groups: ['wheel'] }] });
  await assertRefused([await deb('empty', [])], /user bob: primary group staff does not exist$/, { users: [{ ...user, uid: 1000, group: 'staff' }] });
  await assertRefused([await deb('empty', [])], /group root \(gid 1000\) already exists in the image with gid 0$/, { groups: [{ name: 'root', gid: 1000 }] });
  await assertRefused(
    [await deb('bad-sysusers', [{ path: './usr/lib/sysusers.d/x.conf', content: 'z what\n' }])],
    /^\/usr\/lib\/sysusers\.d\/x\.conf:1: unknown line type "z"$/,
  );
});

const unitFiles: DebEntry[] = [
  {
    path: './usr/lib/systemd/system/foo.service',
    content:
      '[Unit]\nDescription=Foo\n\n[Service]\nExecStart=/usr/bin/foo\n\n[Install]\nWantedBy=multi-user.target\nAlias=foo-alias.service\nAlso=foo.socket\n',
  },
  { path: './usr/lib/systemd/system/foo.socket', content: '[Socket]\nListenStream=1\n[Install]\n# comment\nWantedBy=sockets.target\n' },
  { path: './usr/lib/systemd/system/getty@.service', content: '[Service]\nExecStart=agetty %I\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n' },
  { path: './usr/lib/systemd/system/need.service', content: '[Install]\nRequiredBy=a.target \\\n  b.target\n' },
  { path: './usr/lib/systemd/system/static.service', content: '[Service]\nExecStart=/bin/true\n' },
];

test('units are enabled and masked as systemctl does', asRoot, async () => {
  const { root, report } = await assemble([await deb('units', unitFiles)], {
    units: { enable: ['foo.service', 'getty@.service', 'getty@ttyS0.service', 'need.service'], mask: ['bad.service'] },
  });
  const sys = join(root, 'usr/share/factory/etc/systemd/system');
  const link = (p: string) => readlinkSync(join(sys, p));
  assert.equal(link('multi-user.target.wants/foo.service'), '/usr/lib/systemd/system/foo.service');
  assert.equal(link('foo-alias.service'), '/usr/lib/systemd/system/foo.service');
  assert.equal(link('sockets.target.wants/foo.socket'), '/usr/lib/systemd/system/foo.socket');
  assert.equal(link('getty.target.wants/getty@tty1.service'), '/usr/lib/systemd/system/getty@.service');
  assert.equal(link('getty.target.wants/getty@ttyS0.service'), '/usr/lib/systemd/system/getty@.service');
  assert.equal(link('a.target.requires/need.service'), '/usr/lib/systemd/system/need.service');
  assert.equal(link('b.target.requires/need.service'), '/usr/lib/systemd/system/need.service');
  assert.equal(link('bad.service'), '/dev/null');
  assert.equal(report.unitLinks.length, 8);

  const units = await deb('units', unitFiles);
  await assertRefused([units], /test\.yaml: units\.enable: unit missing\.service is not in the image/, { units: { enable: ['missing.service'], mask: [] } });
  await assertRefused([units], /static\.service has no \[Install\] section, so it cannot be enabled/, { units: { enable: ['static.service'], mask: [] } });
  await assertRefused([units], /foo\.service is both enabled and masked/, { units: { enable: ['foo.service'], mask: ['foo.service'] } });
  await assertRefused([units], /"\.\.\/\.\.\/x\.service" is not a valid unit name/, { units: { enable: ['../../x.service'], mask: [] } });
});

test('alternatives, recipe files, identity', asRoot, async () => {
  const source = join(work, 'motd-source');
  await writeFile(source, 'from the recipe folder\n');
  const pkgs = [
    await deb('base-passwd', [
      { path: './usr/share/base-passwd/passwd.master', content: passwdMaster },
      { path: './usr/share/base-passwd/group.master', content: groupMaster },
    ]),
    await deb('vim-tiny', [{ path: './usr/bin/vim.tiny', content: 'vim', mode: 0o755 }]),
    await deb('base-files', [
      { path: './usr/lib/os-release', content: 'ID=debian\n' },
      { path: './etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' },
      { path: './usr/share/base-files/profile', content: 'PATH=/usr/bin\n' },
      { path: './usr/share/base-files/motd', content: 'default motd\n' },
      { path: './bin/bash', content: 'bash', mode: 0o755 },
    ]),
  ];
  const alice = {
    name: 'alice',
    uid: 1000,
    group: 'alice',
    groups: [],
    home: '/home/alice',
    shell: '/bin/sh',
    gecos: '',
    password: null,
    sshAuthorizedKeys: [],
  };
  const { root } = await assemble(pkgs, {
    users: [alice],
    alternatives: [{ name: 'editor', link: '/usr/bin/editor', path: '/usr/bin/vim.tiny' }],
    files: [
      { path: '/etc/app/secret.conf', content: 'token=1\n', source: null, mode: 0o600, owner: 'alice', group: 'users' },
      { path: '/usr/local/bin/tool', content: null, source, mode: 0o4750, owner: 'root', group: 'daemon' },
      { path: '/etc/motd', content: 'recipe motd\n', source: null, mode: 0o644, owner: 'root', group: 'root' },
    ],
  });
  const etc = join(root, 'usr/share/factory/etc');
  assert.equal(readlinkSync(join(root, 'usr/bin/editor')), '/etc/alternatives/editor');
  assert.equal(readlinkSync(join(etc, 'alternatives/editor')), '/usr/bin/vim.tiny');

  const secret = statSync(join(etc, 'app/secret.conf'));
  assert.deepEqual([secret.uid, secret.gid, secret.mode & 0o7777], [1000, 100, 0o600]);
  assert.equal(readFileSync(join(etc, 'app/secret.conf'), 'utf8'), 'token=1\n');
  const tool = statSync(join(root, 'usr/local/bin/tool'));
  assert.deepEqual([tool.uid, tool.gid, tool.mode & 0o7777], [0, 1, 0o4750]);
  assert.equal(readFileSync(join(root, 'usr/local/bin/tool'), 'utf8'), 'from the recipe folder\n');

  assert.equal(
    readFileSync(join(root, 'usr/lib/os-release'), 'utf8'),
    [
      'PRETTY_NAME="cairn test-image 1.2.3"',
      'NAME="cairn test-image"',
      'ID="cairn"',
      'ID_LIKE="debian"',
      'VERSION="1.2.3"',
      'VERSION_ID="1.2.3"',
      'VERSION_CODENAME="trixie"',
      'IMAGE_ID="test-image"',
      'IMAGE_VERSION="1.2.3"',
      'DEFAULT_HOSTNAME="test-host"',
      '',
    ].join('\n'),
  );
  assert.equal(readlinkSync(join(etc, 'os-release')), '../usr/lib/os-release');
  assert.equal(readFileSync(join(etc, 'hostname'), 'utf8'), 'test-host\n');
  assert.equal(readFileSync(join(etc, 'machine-id'), 'utf8'), '');
  assert.equal(readFileSync(join(etc, 'profile'), 'utf8'), 'PATH=/usr/bin\n', 'package defaults fill /etc');
  assert.equal(readFileSync(join(etc, 'motd'), 'utf8'), 'recipe motd\n', 'a recipe file wins over a package default');
  assert.equal(readFileSync(join(etc, 'shells'), 'utf8'), '# /etc/shells: valid login shells\n/bin/bash\n/usr/bin/bash\n');

  await assertRefused(pkgs, /alternative editor: \/usr\/bin\/nano does not exist in the image$/, {
    alternatives: [{ name: 'editor', link: '/usr/bin/editor', path: '/usr/bin/nano' }],
  });
  await assertRefused(pkgs, /files\[0\] \(\/etc\/x\): owner mallory is not a user of the image$/, {
    files: [{ path: '/etc/x', content: '', source: null, mode: 0o644, owner: 'mallory', group: 'root' }],
  });
  await assertRefused(pkgs, /files\[0\] \(\/etc\/passwd\): cairn generates this file$/, {
    files: [{ path: '/etc/passwd', content: '', source: null, mode: 0o644, owner: 'root', group: 'root' }],
  });
  await assertRefused(pkgs, /files\[0\] \(\/etc\/y\): cannot read source .*no-such-file/, {
    files: [{ path: '/etc/y', content: null, source: join(work, 'no-such-file'), mode: 0o644, owner: 'root', group: 'root' }],
  });
});

async function tarEntries(path: string): Promise<tar.Header[]> {
  const extract = tar.extract();
  const headers: tar.Header[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      headers.push(entry.header);
      for await (const chunk of entry as unknown as AsyncIterable<Buffer>) void chunk;
    }
  })();
  extract.end(await readFile(path));
  await done;
  return headers;
}

const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

test('ld.so.cache and byte-identical tars of two assemblies', asRoot, async () => {
  const lib = readFileSync('/usr/lib/x86_64-linux-gnu/libz.so.1.2.13');
  const pkgs = [
    await deb(
      'libc-bin',
      [
        { path: './sbin/ldconfig', content: readFileSync('/sbin/ldconfig'), mode: 0o755 },
        { path: './etc/ld.so.conf', content: 'include /etc/ld.so.conf.d/*.conf\n' },
        { path: './etc/ld.so.conf.d/multiarch.conf', content: '/usr/lib/x86_64-linux-gnu\n' },
        { path: './var/cache/ldconfig/', type: 'directory', mode: 0o700 },
      ],
      { 'Installed-Size': '4096' },
    ),
    await deb(
      'zlib1g',
      [
        { path: './usr/lib/x86_64-linux-gnu/libz.so.1.2.13', content: lib },
        { path: './usr/lib/x86_64-linux-gnu/libz.so.1', type: 'symlink', linkname: 'libz.so.1.2.13' },
        { path: './usr/bin/both', content: 'x' },
        { path: './usr/bin/linked', type: 'link', linkname: './usr/bin/both' },
      ],
      { 'Installed-Size': '512' },
    ),
  ];
  const units = await deb('units', unitFiles);
  const over: Partial<Recipe> = { units: { enable: ['foo.service'], mask: [] } };
  const first = await assemble([...pkgs, units], over);
  assert.equal(first.report.ldCache, true);
  const cache = readFileSync(join(first.root, 'usr/share/factory/etc/ld.so.cache'));
  assert.ok(cache.includes('libz.so.1'), 'the cache lists the library');
  assert.ok(cache.includes('/usr/lib/x86_64-linux-gnu/libz.so.1'));
  assert.equal(existsSync(join(first.root, 'var/cache/ldconfig/aux-cache')), false);

  // A different umask and a later wall-clock time must not change a byte.
  const umask = process.umask(0o077);
  await new Promise((r) => setTimeout(r, 1100));
  const second = await assemble([...pkgs, units], over).finally(() => process.umask(umask));
  const tarA = join(work, 'a.tar');
  const tarB = join(work, 'b.tar');
  await writeTreeTar(first.root, tarA, EPOCH);
  await writeTreeTar(second.root, tarB, EPOCH);
  assert.equal(await sha256(tarA), await sha256(tarB));

  const headers = await tarEntries(tarA);
  const names = headers.map((h) => h.name);
  assert.equal(names[0], './');
  assert.ok(names.includes('./usr/share/factory/etc/ld.so.cache'));
  assert.ok(headers.every((h) => h.mtime.getTime() === EPOCH * 1000 && h.uname === '' && h.gname === ''));
  const dirs = names.filter((n) => n.endsWith('/'));
  assert.ok(dirs.includes('./usr/'));
  // Depth-first in byte order: "usr/bin/" before "usr/lib/", and a directory before its contents.
  assert.ok(names.indexOf('./usr/bin/') < names.indexOf('./usr/bin/both'));
  assert.ok(names.indexOf('./usr/bin/both') < names.indexOf('./usr/lib/'));
  const linked = headers.find((h) => h.name === './usr/bin/linked')!;
  assert.deepEqual([linked.type, linked.linkname], ['link', './usr/bin/both']);
  const shadow = headers.find((h) => h.name === './usr/share/factory/etc/shadow')!;
  assert.equal(shadow.mode & 0o7777, 0o000, 'a zero mode stays zero');
  const bin = headers.find((h) => h.name === './bin')!;
  assert.deepEqual([bin.type, bin.linkname], ['symlink', 'usr/bin']);
  assert.equal(headers.find((h) => h.name === './tmp/')!.mode & 0o7777, 0o1777);

  // A tree that differs in one byte gives a different tar.
  await writeFile(join(second.root, 'usr/bin/both'), 'y');
  await writeTreeTar(second.root, tarB, EPOCH);
  assert.notEqual(await sha256(tarA), await sha256(tarB));
});

test('device nodes and fifos are skipped and reported', asRoot, async () => {
  // make-deb writes no special files, so this data member is packed by hand.
  const pack = tar.pack();
  pack.entry({ name: './dev/', type: 'directory', mode: 0o755 });
  pack.entry({ name: './dev/console', type: 'character-device', devmajor: 5, devminor: 1, mode: 0o600 });
  pack.entry({ name: './run/initctl', type: 'fifo', mode: 0o600 });
  pack.entry({ name: './usr/bin/real', size: 1, mode: 0o755 }, 'x');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  const control = await makeTar([{ path: './control', content: controlText({ Package: 'makedev', Version: '1.0', Architecture: 'amd64' }) }]);
  const data = arArchive([
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: 'control.tar.gz', data: compress(control, 'gz') },
    { name: 'data.tar.gz', data: compress(Buffer.concat(chunks), 'gz') },
  ]);
  const path = join(work, 'makedev.deb');
  await writeFile(path, data);
  const { root, report } = await assemble([
    { path, pkg: { name: 'makedev', version: '1.0', architecture: 'amd64', size: data.length, sha256: '', filename: 'x' } },
  ]);
  assert.deepEqual(
    report.skipped.map((s) => s.path),
    ['/dev/console', '/run/initctl'],
  );
  assert.deepEqual(readdirSync(join(root, 'dev')), []);
  assert.equal(existsSync(join(root, 'run/initctl')), false);
  assert.equal(readFileSync(join(root, 'usr/bin/real'), 'utf8'), 'x');
});

test('a non-empty output directory is refused and left alone', asRoot, async () => {
  const root = fresh('busy');
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'keep'), 'mine');
  await assert.rejects(assembleRoot({ recipe: recipe(), debs: [], outDir: root, sourceDateEpoch: EPOCH }), /is not empty/);
  assert.equal(readFileSync(join(root, 'keep'), 'utf8'), 'mine');
});

test("OpenSSH: no host keys in the image, recipe users' keys in /etc, the host-key unit; recipe links; PAM stacks from the profiles", asRoot, async () => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8k9V1s3uV3h2cNQ2g5m0yP2r0yq3wzV1fF6j0bQ3x ops@example';
  const pkgs = [
    await deb('base-passwd', [
      { path: './usr/share/base-passwd/passwd.master', content: passwdMaster },
      { path: './usr/share/base-passwd/group.master', content: groupMaster },
    ]),
    await deb('openssh-server', [
      { path: './usr/sbin/sshd', content: 'sshd', mode: 0o755 },
      { path: './usr/share/openssh/sshd_config', content: 'Include /etc/ssh/sshd_config.d/*.conf\n' },
      // A package (or a careless build) that ships a host key: it must not reach the image.
      { path: './etc/ssh/ssh_host_ed25519_key', content: 'shared secret' },
      { path: './usr/lib/systemd/system/ssh.service', content: '[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n' },
    ]),
    await deb('libpam-runtime', [
      { path: './usr/share/pam-configs/unix', content: readFileSync('/usr/share/pam-configs/unix', 'utf8') },
      ...['auth', 'account', 'password', 'session', 'session-noninteractive'].map((s) => ({
        path: `./usr/share/pam/common-${s}`,
        content: readFileSync(`/usr/share/pam/common-${s}`, 'utf8'),
      })),
    ]),
  ];
  const ops = { name: 'ops', uid: 1000, group: 'ops', groups: [], home: '/home/ops', shell: '/bin/sh', gecos: '', password: null, sshAuthorizedKeys: [key] };
  const { root, report } = await assemble(pkgs, { users: [ops], links: [{ path: '/etc/resolv.conf', target: '../run/systemd/resolve/stub-resolv.conf' }] });
  const etc = join(root, 'usr/share/factory/etc');
  assert.equal(report.ssh, true);
  assert.ok(!existsSync(join(etc, 'ssh/ssh_host_ed25519_key')), 'no host key in the image');
  assert.equal(readFileSync(join(etc, 'ssh/sshd_config'), 'utf8'), 'Include /etc/ssh/sshd_config.d/*.conf\n');
  assert.match(
    readFileSync(join(etc, 'ssh/sshd_config.d/50-cairn.conf'), 'utf8'),
    /^AuthorizedKeysFile \.ssh\/authorized_keys \/etc\/ssh\/authorized_keys\.d\/%u$/m,
  );
  assert.equal(readFileSync(join(etc, 'ssh/authorized_keys.d/ops'), 'utf8'), `${key}\n`);
  assert.match(readFileSync(join(root, 'usr/lib/systemd/system/cairn-ssh-host-keys.service'), 'utf8'), /ExecStart=\/usr\/bin\/ssh-keygen -A/);
  assert.equal(readlinkSync(join(root, 'usr/lib/systemd/system/ssh.service.wants/cairn-ssh-host-keys.service')), '../cairn-ssh-host-keys.service');
  assert.equal(readlinkSync(join(etc, 'resolv.conf')), '../run/systemd/resolve/stub-resolv.conf');
  assert.deepEqual(report.pam, [
    '/etc/pam.d/common-auth',
    '/etc/pam.d/common-account',
    '/etc/pam.d/common-password',
    '/etc/pam.d/common-session',
    '/etc/pam.d/common-session-noninteractive',
  ]);
  assert.match(readFileSync(join(etc, 'pam.d/common-auth'), 'utf8'), /^auth\t\[success=1 default=ignore\]\tpam_unix\.so nullok$/m);
});
