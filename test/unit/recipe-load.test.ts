import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { cairnRoot } from '../../src/install.js';
import { formatIssue, loadRecipe, readRecipeText, RecipeError, validateRecipeText } from '../../src/recipe/load.js';

const root = cairnRoot();
const work = mkdtempSync(join(tmpdir(), 'cairn-recipe-'));
after(() => rmSync(work, { recursive: true, force: true }));

const MINIMAL = 'name: t\nversion: "1"\nkernel: {package: linux-image-cloud-amd64}\n';

function valid(text: string, file = join(work, 'r.yaml')) {
  const { recipe, errors } = validateRecipeText(text, file);
  assert.deepEqual(errors.map(formatIssue), []);
  assert.ok(recipe);
  return recipe;
}

test('the default recipe validates with its packages, user and network file', async () => {
  const recipe = await loadRecipe(join(root, 'recipes/container-host.yaml'));
  assert.equal(recipe.name, 'container-host');
  assert.equal(recipe.base.suite, 'trixie');
  assert.equal(recipe.base.essential, true);
  assert.equal(recipe.init, '/usr/lib/systemd/systemd');
  assert.equal(recipe.kernel.package, 'linux-image-cloud-amd64');
  assert.equal(recipe.kernel.config, join(root, 'kernel-configs/container-host.config'));
  for (const pkg of ['systemd', 'systemd-boot-efi', 'nodejs']) assert.ok(recipe.packages.includes(pkg), pkg);
  assert.deepEqual(recipe.units.enable, ['systemd-networkd.service', 'systemd-resolved.service', 'systemd-timesyncd.service', 'ssh.service']);
  for (const pkg of ['openssh-server', 'systemd-resolved', 'systemd-timesyncd']) assert.ok(recipe.packages.includes(pkg), pkg);
  assert.deepEqual(recipe.links, [{ path: '/etc/resolv.conf', target: '../run/systemd/resolve/stub-resolv.conf' }]);
  assert.deepEqual(
    recipe.users.map((u) => [u.name, u.uid, u.group]),
    [['admin', 1000, 'admin']],
  );
  // The admin user's own group is created with gid = uid.
  assert.deepEqual(recipe.groups, [{ name: 'admin', gid: 1000 }]);
  assert.equal(recipe.files[0]!.mode, 0o644);
});

test('the tiny recipe validates without Essential packages and with a script as init', async () => {
  const recipe = await loadRecipe(join(root, 'recipes/tiny.yaml'));
  assert.equal(recipe.base.essential, false);
  assert.equal(recipe.base.priority, 'none');
  assert.deepEqual(recipe.packages, ['busybox-static', 'tiny-initramfs', 'systemd-boot-efi']);
  assert.deepEqual(recipe.users, []);
  const init = recipe.files.find((f) => f.path === recipe.init);
  assert.ok(init, 'init script is placed by files');
  assert.equal(init.mode, 0o755);
  assert.match(init.content ?? '', /^#!\/usr\/bin\/busybox sh\n/);
});

test('a minimal recipe gets every default', () => {
  const recipe = valid(MINIMAL);
  assert.deepEqual(recipe, {
    file: join(work, 'r.yaml'),
    name: 't',
    version: '1',
    description: '',
    base: {
      suite: 'trixie',
      extraSuites: [],
      mirror: 'http://deb.debian.org/debian',
      components: ['main'],
      architecture: 'amd64',
      keyring: join(root, 'keyrings/debian-archive-keyring.gpg'),
      essential: true,
      priority: 'none',
    },
    packages: [],
    kernel: { package: 'linux-image-cloud-amd64', config: join(root, 'kernel-configs/container-host.config') },
    init: '/usr/lib/systemd/systemd',
    hostname: 't',
    users: [],
    groups: [],
    files: [],
    units: { enable: [], mask: [] },
    alternatives: [],
    links: [],
    disk: { esp: 256 * 2 ** 20, usr: 2 * 2 ** 30, usrVerity: 64 * 2 ** 20, root: 2 ** 30, usrCompression: 'lz4hc' },
    update: null,
    containers: [],
  });
});

test('defaults do not leak from one recipe into the next', () => {
  const first = valid(`${MINIMAL}packages: [a1]\nunits: {enable: [x.service]}\n`);
  const second = valid(MINIMAL);
  assert.deepEqual(first.units.enable, ['x.service']);
  assert.deepEqual(second.units.enable, []);
  assert.deepEqual(second.packages, []);
});

test('host paths resolve against the recipe folder', () => {
  const dir = join(work, 'paths');
  mkdirSync(join(dir, 'files'), { recursive: true });
  mkdirSync(join(dir, 'keys'));
  for (const f of ['files/motd', 'keys/release.pub', 'archive.gpg', 'kernel.config']) writeFileSync(join(dir, f), 'x');
  const recipe = valid(
    `${MINIMAL.replace(/kernel:.*\n/, '')}` +
      'kernel: {package: linux-image-cloud-amd64, config: kernel.config}\n' +
      'base: {keyring: archive.gpg, mirror: "http://127.0.0.1:8080/debian/"}\n' +
      'files: [{path: /etc/motd, source: files/motd, mode: 0o600, owner: admin, group: adm}]\n' +
      'update: {repository: "https://updates.example.com/c", keys: [keys/release.pub]}\n',
    join(dir, 'host.yaml'),
  );
  assert.equal(recipe.base.keyring, join(dir, 'archive.gpg'));
  assert.equal(recipe.kernel.config, join(dir, 'kernel.config'));
  assert.equal(recipe.base.mirror, 'http://127.0.0.1:8080/debian', 'trailing slash dropped');
  assert.deepEqual(recipe.files, [{ path: '/etc/motd', content: null, source: join(dir, 'files/motd'), mode: 0o600, owner: 'admin', group: 'adm' }]);
  assert.deepEqual(recipe.update, { repository: 'https://updates.example.com/c', channel: 'stable', keys: [join(dir, 'keys/release.pub')] });
});

test('modes, sizes and compression are read the way they are written', () => {
  const recipe = valid(
    `${MINIMAL}files:\n  - {path: /a, content: "", mode: "4755"}\n  - {path: /b, content: "", mode: "0640"}\n` +
      'disk: {esp: 1048576, usr: 3G, usr-verity: 8KiB, root: 1T, usr-compression: none}\n',
  );
  assert.deepEqual(
    recipe.files.map((f) => f.mode),
    [0o4755, 0o640],
  );
  assert.deepEqual(recipe.disk, { esp: 2 ** 20, usr: 3 * 2 ** 30, usrVerity: 8 * 2 ** 10, root: 2 ** 40, usrCompression: null });
});

test('users and containers get their defaults', () => {
  const recipe = valid(
    `${MINIMAL}groups: [{name: ops, gid: 2000}]\n` +
      'users: [{name: alice, uid: 1000, group: ops}, {name: bob, uid: 1001}]\n' +
      'containers: [{name: web, command: [/usr/bin/node, /srv/app.js], memory: 256MiB, env: {PORT: "80"}}]\n',
  );
  assert.deepEqual(recipe.users, [
    { name: 'alice', uid: 1000, group: 'ops', groups: [], home: '/home/alice', shell: '/bin/sh', gecos: '', password: null, sshAuthorizedKeys: [] },
    { name: 'bob', uid: 1001, group: 'bob', groups: [], home: '/home/bob', shell: '/bin/sh', gecos: '', password: null, sshAuthorizedKeys: [] },
  ]);
  assert.deepEqual(recipe.groups, [
    { name: 'ops', gid: 2000 },
    { name: 'bob', gid: 1001 },
  ]);
  assert.deepEqual(recipe.containers, [
    {
      name: 'web',
      command: ['/usr/bin/node', '/srv/app.js'],
      layers: [],
      restart: 'on-failure',
      memory: 256 * 2 ** 20,
      cpus: null,
      pids: null,
      net: 'private',
      env: { PORT: '80' },
    },
  ]);
});

test('errors point at the offending value, sorted by position', () => {
  const { recipe, errors } = validateRecipeText(`${MINIMAL}hostname: -bad\npackages:\n  - ok\n  - BAD\n`, 'x.yaml');
  assert.equal(recipe, undefined);
  assert.deepEqual(
    errors.map((e) => [e.line, e.column, e.path]),
    [
      [4, 11, 'hostname'],
      [7, 5, 'packages[1]'],
    ],
  );
  assert.equal(errors[0]!.file, 'x.yaml');
});

test('loadRecipe throws a RecipeError whose message lists every issue, one per line', async () => {
  const file = join(work, 'bad.yaml');
  writeFileSync(file, 'name: t\nversion: "1"\npackages: [42]\nextra: 1\n');
  const error = await loadRecipe(file).catch((err: unknown) => err);
  assert.ok(error instanceof RecipeError);
  assert.ok(error instanceof CairnError);
  assert.deepEqual(error.message.split('\n'), [
    `${file} has 3 problems:`,
    `${file}:1:1: missing required key "kernel"`,
    `${file}:3:12: packages[0]: expected a Debian package name, or NAME/SUITE for one from base.extra-suites, got 42`,
    `${file}:4:1: unknown key "extra"; expected one of name, version, description, base, packages, kernel, init, hostname, groups, users, files, units, alternatives, links, disk, update, containers`,
  ]);
});

test('a recipe file that cannot be read is a CairnError naming it', async () => {
  const missing = join(work, 'nope.yaml');
  await assert.rejects(readRecipeText(missing), (err: unknown) => err instanceof CairnError && err.message.includes(missing));
  await assert.rejects(loadRecipe(missing), CairnError);
});
