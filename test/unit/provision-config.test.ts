// Ignition configs as operators write them (what Butane emits for the fcos and flatcar variants),
// and broken ones, each with the exact errors `cairn provision check` gives.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { formatIssue } from '../../src/document/issues.js';
import { MAX_CONFIG_BYTES, pathProblem, validateConfigText } from '../../src/provision/config.js';
import { decodeDataUrl, readResource } from '../../src/provision/contents.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8k9V1s3uV3h2cNQ2g5m0yP2r0yq3wzV1fF6j0bQ3x ops@example';

// As `butane --pretty --strict` writes a config with a user, a file, a directory, a link and units.
const BUTANE = {
  ignition: { version: '3.4.0' },
  passwd: {
    users: [{ name: 'ops', passwordHash: '$y$j9T$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDE', sshAuthorizedKeys: [KEY], groups: ['sudo'] }],
    groups: [{ name: 'deploy', gid: 2000 }],
  },
  storage: {
    files: [
      { path: '/etc/hostname', mode: 420, overwrite: true, contents: { compression: '', source: 'data:,web-1%0A' } },
      {
        path: '/etc/app/config.toml',
        mode: 384,
        user: { name: 'ops' },
        contents: {
          source: 'data:;base64,W3NlcnZlcl0KcG9ydCA9IDgwODAK',
          verification: { hash: `sha512-${createHash('sha512').update('[server]\nport = 8080\n').digest('hex')}` },
        },
      },
    ],
    directories: [{ path: '/var/lib/app', mode: 493, user: { name: 'ops' }, group: { name: 'deploy' } }],
    links: [{ path: '/etc/app/current', target: '/var/lib/app', hard: false }],
  },
  systemd: {
    units: [
      {
        name: 'app.service',
        enabled: true,
        contents: '[Unit]\nDescription=app\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n',
      },
      { name: 'systemd-timesyncd.service', dropins: [{ name: '10-ntp.conf', contents: '[Service]\nEnvironment=X=1\n' }] },
      { name: 'apt-daily.timer', mask: true },
    ],
  },
};

const text = (config: unknown): string => JSON.stringify(config, null, 2) + '\n';
const errorsOf = (config: unknown, where = 'host.ign'): string[] =>
  validateConfigText(typeof config === 'string' ? config : text(config), where).errors.map(formatIssue);

test('a Butane-style config with users, groups, files, directories, links and units is accepted', () => {
  const { config, errors } = validateConfigText(text(BUTANE), 'host.ign');
  assert.deepEqual(errors, []);
  assert.equal(config!.passwd!.users![0]!.name, 'ops');
  assert.equal(config!.storage!.files!.length, 2);
});

test('the smallest config, and every spec version from 3.0.0 to 3.5.0, are accepted', () => {
  for (const version of ['3.0.0', '3.1.0', '3.2.0', '3.3.0', '3.4.0', '3.5.0']) assert.deepEqual(errorsOf({ ignition: { version } }), [], version);
});

const broken: [string, unknown, string[]][] = [
  ['an old spec', { ignition: { version: '2.3.0' } }, ['host.ign:1:24: ignition.version: expected an Ignition spec version from 3.0.0 to 3.5.0, got "2.3.0"']],
  ['no version', { ignition: {} }, ['host.ign:1:2: ignition: missing required key "version"']],
  [
    'an unsupported field',
    { ignition: { version: '3.4.0' }, storage: { disks: [{ device: '/dev/vdb' }] } },
    [
      'host.ign:1:52: storage.disks: cairn does not implement partitioning: the A/B layout is fixed, and the root grows to the disk by itself (this part of the Ignition spec); remove it from the config',
    ],
  ],
  [
    'kernel arguments',
    { ignition: { version: '3.4.0' }, kernelArguments: { shouldExist: ['quiet'] } },
    [
      'host.ign:1:51: kernelArguments: cairn does not implement kernel arguments: the command line is inside the signed UKI (this part of the Ignition spec); remove it from the config',
    ],
  ],
  [
    'a merged config',
    { ignition: { version: '3.4.0', config: { merge: [] } } },
    [
      'host.ign:1:41: ignition.config: cairn does not implement merging or replacing configs: give the whole config (this part of the Ignition spec); remove it from the config',
    ],
  ],
  ['an unknown field', { ignition: { version: '3.4.0' }, passwrd: {} }, ['host.ign:1:33: unknown key "passwrd"; did you mean "passwd"?']],
  [
    'path traversal',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/../usr/bin/sh' }] } },
    ['host.ign:1:61: storage.files[0].path: "/etc/../usr/bin/sh" has a . or .. component'],
  ],
  [
    'a file into /usr',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/usr/bin/evil' }] } },
    ['host.ign:1:61: storage.files[0].path: /usr/bin/evil is in /usr, which is read-only and verified: provision files into /etc or /var'],
  ],
  [
    'a directory on the ESP',
    { ignition: { version: '3.4.0' }, storage: { directories: [{ path: '/efi/EFI' }] } },
    ["host.ign:1:67: storage.directories[0].path: /efi/EFI is in /efi, which is not part of the host's writable root"],
  ],
  [
    'a relative path',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: 'etc/x' }] } },
    ['host.ign:1:61: storage.files[0].path: expected an absolute path, got "etc/x"'],
  ],
  [
    'a user name with a colon',
    { ignition: { version: '3.4.0' }, passwd: { users: [{ name: 'root:x' }] } },
    ['host.ign:1:60: passwd.users[0].name: expected an account name (lower case letters, digits, _ and -, at most 32, no colon or line break), got "root:x"'],
  ],
  [
    'a user name with a line break',
    { ignition: { version: '3.4.0' }, passwd: { users: [{ name: 'a\nroot' }] } },
    ['host.ign:1:60: passwd.users[0].name: expected an account name (lower case letters, digits, _ and -, at most 32, no colon or line break), got "a\\nroot"'],
  ],
  [
    'an SSH key that spans lines',
    { ignition: { version: '3.4.0' }, passwd: { users: [{ name: 'ops', sshAuthorizedKeys: ['ssh-ed25519 AAAA\ncommand="x" ssh-rsa B'] }] } },
    [
      'host.ign:1:87: passwd.users[0].sshAuthorizedKeys[0]: expected one OpenSSH public key line, without line breaks, got "ssh-ed25519 AAAA\\ncommand=\\"x\\" ssh-rsa B"',
    ],
  ],
  [
    'a setuid mode',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x', mode: 2541 }] } },
    [
      'host.ign:1:77: storage.files[0].mode: expected a permission mode as a decimal number (420 is 0644, 493 is 0755), without setuid, setgid or sticky bits, got 2541',
    ],
  ],
  [
    'a bad hash form',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x', contents: { source: 'data:,x', verification: { hash: 'md5-abc' } } }] } },
    ['host.ign:1:124: storage.files[0].contents.verification.hash: expected sha512-<128 hex digits> or sha256-<64 hex digits>, got "md5-abc"'],
  ],
  [
    'a tftp source',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x', contents: { source: 'tftp://10.0.0.1/x' } }] } },
    ['host.ign:1:91: storage.files[0].contents.source: only data:, http: and https: sources are supported, not "tftp://10.0.0.1/x"'],
  ],
  [
    'appending',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x', append: [{ source: 'data:,y' }] }] } },
    ['host.ign:1:79: storage.files[0].append: cairn does not implement appending to files (this part of the Ignition spec); remove it from the config'],
  ],
  [
    'the same path twice',
    { ignition: { version: '3.4.0' }, storage: { files: [{ path: '/etc/x' }, { path: '/etc/x' }] } },
    ['host.ign:1:79: storage.files[1].path: /etc/x is also storage.files[0]'],
  ],
  [
    'a bad unit name',
    { ignition: { version: '3.4.0' }, systemd: { units: [{ name: '../evil.service' }] } },
    ['host.ign:1:61: systemd.units[0].name: expected a systemd unit name, like app.service, got "../evil.service"'],
  ],
  [
    'not JSON',
    '{"ignition": {"version": "3.4.0"',
    [
      'host.ign:1:33: not valid JSON: Flow map in block collection must be sufficiently indented and end with a }',
      'host.ign:1:33: not valid JSON: Flow map must end with a }',
    ],
  ],
  ['an empty file', '', ['host.ign:1:1: the config is empty; expected an Ignition config with at least {"ignition": {"version": "3.4.0"}}']],
];

for (const [what, config, expected] of broken) {
  test(`a config with ${what} is refused with its exact errors`, () => {
    const source = typeof config === 'string' ? config : JSON.stringify(config);
    assert.deepEqual(errorsOf(source), expected);
  });
}

test('an oversized config is refused before it is parsed', () => {
  const big = JSON.stringify({
    ignition: { version: '3.4.0' },
    storage: { files: [{ path: '/etc/x', contents: { source: `data:,${'a'.repeat(MAX_CONFIG_BYTES)}` } }] },
  });
  assert.deepEqual(errorsOf(big), [`host.ign:1:1: the config is ${big.length} bytes, more than the ${MAX_CONFIG_BYTES} a first boot reads`]);
});

test('paths: only plain absolute paths in the writable root', () => {
  assert.equal(pathProblem('/etc/ssh/sshd_config.d/10.conf'), null);
  assert.equal(pathProblem('/var/lib/x'), null);
  assert.match(pathProblem('/etc//x')!, /not a plain absolute path/);
  assert.match(pathProblem('/etc/x/')!, /not a plain absolute path/);
  assert.match(pathProblem('/usr')!, /read-only and verified/);
  assert.match(pathProblem('/proc/sys/kernel/x')!, /not part of the host's writable root/);
  assert.equal(pathProblem('/usrlocal'), null);
});

test('data: URLs decode as RFC 2397 says; a wrong hash is an error naming both hashes', async () => {
  assert.equal(decodeDataUrl('data:,hello%20world%0A', 'x').toString(), 'hello world\n');
  assert.equal(decodeDataUrl('data:text/plain;charset=utf-8;base64,aGk=', 'x').toString(), 'hi');
  assert.throws(() => decodeDataUrl('data:;base64,@@@', 'f'), /base64 is malformed/);
  const sha256 = createHash('sha256').update('hi').digest('hex');
  assert.equal((await readResource({ source: 'data:,hi', verification: { hash: `sha256-${sha256}` } }, 'f')).toString(), 'hi');
  await assert.rejects(
    readResource({ source: 'data:,ho', verification: { hash: `sha256-${sha256}` } }, 'storage.files[0]'),
    /storage\.files\[0\]: the data: URL has sha256 [0-9a-f]{64}, but the config's verification\.hash says/,
  );
});
