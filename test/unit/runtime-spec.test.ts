// The container spec and what feeds it: checks, the encoding native/spawn decodes (and its own
// checks, through `spawn --check`, which needs no privileges), the option parsers, the
// generated /etc, and the state files `cairn ps` trusts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { etcFiles } from '../../src/runtime/etc-files.js';
import { parseCpus, parseEnv, parseMemory, parsePids, parseUser, parseVolume } from '../../src/runtime/run-options.js';
import { buildSpec, type RunRequest } from '../../src/runtime/run.js';
import { checkSpec, encodeSpec, isCleanAbsolute, type ContainerSpec } from '../../src/runtime/spec.js';
import { containerPaths, parseExitLine, parseState } from '../../src/runtime/state.js';
import { NATIVE } from '../../src/install.js';

const SPAWN = NATIVE.spawn();

function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: 'web',
    hostname: 'web',
    rootDir: '/run/cairn/containers/web/root',
    root: { usr: '/usr', layers: [] },
    args: ['/bin/sh', '-c', 'echo "a b"'],
    env: ['PATH=/usr/bin', 'EMPTY='],
    cwd: '/',
    user: { uid: 0, gid: 0, groups: [] },
    net: 'private',
    binds: [],
    tmpfs: [],
    files: [],
    symlinks: [],
    limits: {},
    tty: false,
    ...overrides,
  };
}

function tokens(buf: Buffer): string[] {
  const text = buf.toString('utf8');
  assert.ok(text.endsWith('\0'));
  return text.slice(0, -1).split('\0');
}

function refused(s: ContainerSpec, message: RegExp): void {
  assert.throws(
    () => checkSpec(s),
    (err: unknown) => err instanceof CairnError && message.test(err.message),
  );
}

describe('spec encoding', () => {
  test('every field becomes a keyword and its arguments, in order', () => {
    const encoded = encodeSpec(
      spec({
        root: { usr: '/images/x/rootfs/usr', layers: ['/layers/top', '/layers/base'] },
        user: { uid: 1000, gid: 100, groups: [5, 27] },
        net: 'none',
        userns: { uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 100000, count: 65536 }] },
        tmpfs: [{ path: '/scratch', mode: 0o1777 }],
        binds: [{ source: '/srv/site', target: '/srv', readOnly: true }],
        files: [{ path: '/etc/hostname', mode: 0o644, content: 'web\n' }],
        symlinks: [{ path: '/etc/mtab', target: '../proc/self/mounts' }],
        limits: { memoryBytes: 256 << 20, cpus: 1.5, pids: 64 },
        tty: true,
      }),
    );
    assert.deepEqual(tokens(encoded), [
      'cairn-spawn-spec/1',
      'name',
      'web',
      'hostname',
      'web',
      'rootdir',
      '/run/cairn/containers/web/root',
      'usr',
      '/images/x/rootfs/usr',
      'layer',
      '/layers/top',
      'layer',
      '/layers/base',
      'arg',
      '/bin/sh',
      'arg',
      '-c',
      'arg',
      'echo "a b"',
      'env',
      'PATH=/usr/bin',
      'env',
      'EMPTY=',
      'cwd',
      '/',
      'user',
      '1000',
      '100',
      'group',
      '5',
      'group',
      '27',
      'net',
      'none',
      'userns',
      'uidmap',
      '0',
      '100000',
      '65536',
      'gidmap',
      '0',
      '100000',
      '65536',
      'tmpfs',
      '/scratch',
      '1777',
      'bind',
      '/srv/site',
      '/srv',
      'ro',
      'file',
      '/etc/hostname',
      '644',
      'web\n',
      'symlink',
      '../proc/self/mounts',
      '/etc/mtab',
      'memory',
      String(256 << 20),
      'cpu',
      '150000',
      '100000',
      'pids',
      '64',
      'tty',
    ]);
  });

  test('an OCI root is a rootfs instead of usr and layers', () => {
    const t = tokens(encodeSpec(spec({ root: { rootfs: '/var/lib/cairn/images/abc/rootfs' } })));
    assert.deepEqual(t.slice(7, 9), ['rootfs', '/var/lib/cairn/images/abc/rootfs']);
    assert.ok(!t.includes('usr'));
  });

  test('clean absolute paths only', () => {
    for (const p of ['/', '/usr', '/a/b.c/d']) assert.equal(isCleanAbsolute(p), true, p);
    for (const p of ['', 'usr', '/usr/', '/a//b', '/a/./b', '/a/../b', '/..', '/a\0b']) assert.equal(isCleanAbsolute(p), false, JSON.stringify(p));
  });

  test('what the helper would refuse is refused here first, naming the field', () => {
    refused(spec({ name: '../x' }), /invalid container name/);
    refused(spec({ hostname: 'a b' }), /invalid host name/);
    refused(spec({ rootDir: 'relative' }), /rootDir 'relative' is not a clean absolute path/);
    refused(spec({ root: { usr: '/usr', layers: ['/l:a'] } }), /root\.layers '\/l:a' contains ':'/);
    refused(spec({ args: [] }), /args is empty/);
    refused(spec({ args: ['a\0b'] }), /args contain a NUL byte/);
    refused(spec({ env: ['NOVALUE'] }), /env entry 'NOVALUE' is not NAME=VALUE/);
    refused(spec({ env: ['=x'] }), /env entry '=x'/);
    refused(spec({ cwd: '/a/../b' }), /cwd '\/a\/\.\.\/b'/);
    refused(spec({ user: { uid: -1, gid: 0, groups: [] } }), /user\.uid -1 is not a user or group id/);
    refused(spec({ binds: [{ source: '/x', target: '/../etc', readOnly: false }] }), /binds\.target/);
    refused(
      spec({ binds: Array.from({ length: 65 }, (_, i) => ({ source: '/x', target: `/m${i}`, readOnly: true })) }),
      /binds has 65 entries; the helper takes at most 64/,
    );
    refused(spec({ files: [{ path: '/etc/x', mode: 0o10000, content: '' }] }), /files\.mode mode 4096/);
    refused(spec({ limits: { memoryBytes: 1000 } }), /limits\.memoryBytes 1000 is below 1 MiB/);
    refused(spec({ limits: { cpus: 0 } }), /limits\.cpus 0/);
    refused(spec({ limits: { pids: 0 } }), /limits\.pids 0/);
    refused(spec({ userns: { uidMap: [], gidMap: [] } }), /userns\.uidMap is empty/);
    // and a sound one passes
    checkSpec(spec());
  });
});

describe('the helper decodes what the encoder writes', { skip: existsSync(SPAWN) ? false : 'native/build/spawn is not built (npm run build)' }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-spec-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function check(bytes: Buffer | string): Promise<{ code: number | null; stderr: string }> {
    const file = join(dir, 'spec');
    await writeFile(file, bytes);
    const r = spawnSync(SPAWN, ['--check', file], { encoding: 'utf8' });
    return { code: r.status, stderr: r.stderr };
  }

  test('encoded specs are accepted', async () => {
    assert.deepEqual(await check(encodeSpec(spec())), { code: 0, stderr: '' });
    const full = encodeSpec(
      spec({
        root: { usr: '/usr', layers: ['/l1', '/l2'] },
        user: { uid: 1, gid: 2, groups: [3] },
        userns: { uidMap: [{ inside: 0, outside: 1000, count: 1 }], gidMap: [{ inside: 0, outside: 1000, count: 1 }] },
        binds: [{ source: '/a', target: '/b', readOnly: false }],
        tmpfs: [{ path: '/t', mode: 0o700 }],
        files: [{ path: '/etc/f', mode: 0o600, content: 'x=y\nz' }],
        symlinks: [{ path: '/etc/l', target: 'f' }],
        limits: { memoryBytes: 1 << 30, cpus: 0.25, pids: 10 },
        tty: true,
      }),
    );
    assert.deepEqual(await check(full), { code: 0, stderr: '' });
  });

  test('bad specs get one line naming the problem, exit 125', async () => {
    const base = ['cairn-spawn-spec/1', 'name', 'x', 'rootdir', '/r', 'usr', '/usr', 'arg', '/bin/true'];
    const enc = (t: string[]) => Buffer.from(t.map((x) => `${x}\0`).join(''));
    const cases: [Buffer | string, string][] = [
      ['', 'spec: SPEC is not a cairn spawn spec (not NUL-terminated)'],
      [enc(['something-else', ...base.slice(1)]), 'spec: SPEC does not start with cairn-spawn-spec/1'],
      [enc([...base, 'bogus', '1']), "spec: unknown keyword 'bogus' at token 10"],
      [enc([...base, 'name', 'y']), "spec: 'name' given twice"],
      [enc([...base, 'cwd', 'relative']), "spec: 'cwd relative': not a clean absolute path"],
      [enc([...base, 'bind', '/a', '/b', 'rx']), "spec: 'bind /a /b rx': expected ro or rw"],
      [enc([...base, 'pids', '-1']), "spec: 'pids -1': not a number up to 4194304"],
      [enc([...base, 'net']), "spec: 'net' at token 10 is missing an argument"],
      [enc([...base, 'env', 'NOEQUALS']), "spec: 'env NOEQUALS': not NAME=VALUE"],
      [enc(base.slice(0, 7)), "spec: no 'arg': nothing to run"],
      [enc([...base, 'rootfs', '/x']), "spec: give exactly one of 'usr' and 'rootfs'"],
      [enc([...base, 'userns']), "spec: 'userns' needs at least one 'uidmap' and one 'gidmap'"],
    ];
    for (const [bytes, message] of cases) {
      const r = await check(bytes);
      assert.equal(r.code, 125, message);
      assert.equal(r.stderr, `cairn-spawn: ${message.replace('SPEC', join(dir, 'spec'))}\n`);
    }
  });
});

describe('cairn run options', () => {
  test('memory sizes in binary units', () => {
    assert.equal(parseMemory('512m'), 512 * 2 ** 20);
    assert.equal(parseMemory('1g'), 2 ** 30);
    assert.equal(parseMemory('1.5G'), 1.5 * 2 ** 30);
    assert.equal(parseMemory('64MiB'), 64 * 2 ** 20);
    assert.equal(parseMemory('2097152'), 2 ** 21);
    for (const bad of ['100', '1k', 'lots', '-5m', '']) assert.throws(() => parseMemory(bad), /--memory/);
  });

  test('cpus and pids', () => {
    assert.equal(parseCpus('0.5'), 0.5);
    assert.equal(parseCpus('2'), 2);
    for (const bad of ['0', '-1', 'x', '2000']) assert.throws(() => parseCpus(bad), /--cpus/);
    assert.equal(parsePids('100'), 100);
    for (const bad of ['0', '1.5', 'x']) assert.throws(() => parsePids(bad), /--pids/);
  });

  test('volumes: host path relative to the working directory, container path absolute', () => {
    assert.deepEqual(parseVolume('./site:/srv:ro', '/home/me'), { source: '/home/me/site', target: '/srv', readOnly: true });
    assert.deepEqual(parseVolume('/data:/data/', '/'), { source: '/data', target: '/data', readOnly: false });
    for (const bad of ['/a', '/a:b', '/a:/', '/a:/b:rx', '/a:/b/../c', ':/b']) assert.throws(() => parseVolume(bad, '/'), /-v /);
  });

  test('users and environment', () => {
    assert.deepEqual(parseUser('root'), { uid: 0, gid: 0 });
    assert.deepEqual(parseUser('nobody'), { uid: 65534, gid: 65534 });
    assert.deepEqual(parseUser('1000'), { uid: 1000, gid: 1000 });
    assert.deepEqual(parseUser('1000:100'), { uid: 1000, gid: 100 });
    for (const bad of ['alice', '1000:', '-1', '1:2:3']) assert.throws(() => parseUser(bad), /--user/);
    assert.equal(parseEnv('A=b=c'), 'A=b=c');
    assert.equal(parseEnv('HOME_X', { HOME_X: '/x' }), 'HOME_X=/x');
    assert.equal(parseEnv('UNSET_X', {}), null);
    assert.throws(() => parseEnv('1A=b'), /-e 1A=b/);
  });
});

describe('the container /etc', () => {
  test('accounts for root, nobody and a numeric user', () => {
    const { files } = etcFiles({ hostname: 'h', user: { uid: 1000, gid: 1000 }, net: 'none' });
    const file = (p: string) => files.find((f) => f.path === p)!.content;
    assert.match(file('/etc/passwd'), /^root:x:0:0:root:\/root:\/bin\/sh\n/);
    assert.match(file('/etc/passwd'), /\nuser:x:1000:1000:user:\/home\/user:\/bin\/sh\n$/);
    assert.match(file('/etc/group'), /\nuser:x:1000:\n$/);
    assert.equal(file('/etc/hostname'), 'h\n');
    assert.match(file('/etc/hosts'), /127\.0\.1\.1\th\n/);
    assert.equal(file('/etc/resolv.conf'), '# --net none: no name servers\n');
  });

  test("--net host takes the host's resolver configuration, if it is sane", () => {
    const conf = (text: string) =>
      etcFiles({ hostname: 'h', user: { uid: 0, gid: 0 }, net: 'host', hostResolvConf: text }).files.find((f) => f.path === '/etc/resolv.conf')!.content;
    assert.equal(conf('nameserver 10.0.0.1\n'), 'nameserver 10.0.0.1\n');
    assert.equal(conf('nameserver \0'), '');
  });

  test('an OCI root keeps its own accounts: only names and resolver are written into it', () => {
    const req: RunRequest = {
      root: { layers: [] },
      command: [],
      env: ['A=1'],
      user: { uid: 0, gid: 0 },
      limits: {},
      net: 'none',
      binds: [],
      detach: false,
      tty: false,
      remove: true,
      userns: false,
    };
    const paths = containerPaths('oci');
    const s = buildSpec(
      req,
      'oci',
      { root: { rootfs: '/images/x' }, image: { args: ['/app', 'serve'], entrypoint: ['/app'], env: ['A=0', 'B=2'], cwd: '/srv', user: '' } },
      paths,
      undefined,
    );
    assert.deepEqual(
      s.files.map((f) => f.path),
      ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'],
    );
    assert.deepEqual(s.args, ['/app', 'serve']);
    const given = buildSpec(
      { ...req, command: ['check'] },
      'oci',
      { root: { rootfs: '/images/x' }, image: { args: ['/app', 'serve'], entrypoint: ['/app'], env: [], cwd: '/', user: '' } },
      paths,
      undefined,
    );
    assert.deepEqual(given.args, ['/app', 'check'], 'a given command replaces Cmd and keeps Entrypoint');
    assert.equal(s.cwd, '/srv');
    assert.deepEqual(
      s.env.filter((e) => /^[AB]=/.test(e)),
      ['A=1', 'B=2'],
    );
    assert.deepEqual(s.binds, []);
    // the shared /usr gets the full set and the private writable space
    const usr = buildSpec({ ...req, command: ['/bin/true'] }, 'u', { root: { usr: '/usr', layers: [] } }, containerPaths('u'), undefined);
    assert.ok(usr.files.some((f) => f.path === '/etc/passwd'));
    assert.deepEqual(
      usr.binds.map((b) => b.target),
      ['/var', '/home', '/root'],
    );
  });
});

describe('container state files', () => {
  test('exit lines', () => {
    assert.deepEqual(parseExitLine('exited 0 0 0\n'), { code: 0, signal: 0, oomKilled: false });
    assert.deepEqual(parseExitLine('exited 137 9 1'), { code: 137, signal: 9, oomKilled: true });
    for (const bad of ['exited 1 0', 'exited x 0 0', 'exited 1 0 2', 'started 5', 'exited 1000 0 0']) assert.equal(parseExitLine(bad), null, bad);
  });

  test('state.json is checked before its pids are trusted', () => {
    const good = { name: 'a', createdAt: 'now', command: ['x'], usr: '/usr', net: 'none', detached: true, supervisor: { pid: 5, start: '123' } };
    assert.deepEqual(parseState(JSON.stringify(good), 'f'), good);
    for (const bad of [
      '{',
      JSON.stringify({ ...good, supervisor: { pid: -1, start: '1' } }),
      JSON.stringify({ ...good, supervisor: { pid: 5, start: 'x; rm' } }),
      JSON.stringify({ ...good, init: { pid: '5', start: '1' } }),
      JSON.stringify({ ...good, command: 'x' }),
    ])
      assert.throws(() => parseState(bad, 'f'), CairnError);
  });

  test('names cannot leave the state directories', () => {
    const saved = process.env.CAIRN_RUN_DIR;
    process.env.CAIRN_RUN_DIR = '/tmp/cairn-run-test';
    try {
      assert.equal(containerPaths('web').stateDir, '/tmp/cairn-run-test/containers/web');
      for (const bad of ['', '..', '../x', 'a/b', '.hidden', 'x'.repeat(64)]) assert.throws(() => containerPaths(bad), /invalid container name/);
    } finally {
      if (saved === undefined) delete process.env.CAIRN_RUN_DIR;
      else process.env.CAIRN_RUN_DIR = saved;
    }
  });
});
