// cairn run / ps / logs / stop / rm as a user drives them (as root on this machine): exit codes
// and signals pass through, detached containers outlive the command that started them, and
// every failure to start is one line naming the step that failed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, REPO, RuntimeSandbox, SPAWN, until } from '../fixtures/runtime.js';

const isRoot = process.getuid?.() === 0;

interface PsEntry {
  name: string;
  status: string;
  exit: { code: number; signal: number; oomKilled: boolean } | null;
  pid: number | null;
  supervisorPid: number | null;
}

describe('container lifecycle', { skip: isRoot ? false : 'needs root' }, () => {
  let box: RuntimeSandbox;
  let work: string;
  before(async () => {
    execFileSync('make', ['-s', '-C', join(REPO, 'native')], { stdio: 'inherit' });
    box = await RuntimeSandbox.create('cairn-rt-life-');
    work = await mkdtemp(join(tmpdir(), 'cairn-rt-life-work-'));
  });
  after(async () => {
    await box?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const ps = (): PsEntry[] => JSON.parse(box.cairn('ps', '--json').stdout) as PsEntry[];
  const entry = (name: string) => ps().find((c) => c.name === name);

  test("the exit code is the command's", () => {
    assert.equal(box.cairn('run', '--', '/bin/sh', '-c', 'exit 42').code, 42);
    assert.equal(box.cairn('run', '--', '/bin/true').code, 0);
  });

  test('SIGTERM to cairn run reaches the command (even one without a handler)', async () => {
    const plain = box.start('--', '/bin/sh', '-c', 'echo ready; exec /bin/sleep 100');
    await until(() => plain.output().includes('ready'), 'the container to start');
    plain.child.kill('SIGTERM');
    assert.equal(await plain.exited, 143);

    const trapped = box.start('--', '/bin/sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done');
    await until(() => trapped.output().includes('ready'), 'the container to start');
    trapped.child.kill('SIGTERM');
    assert.equal(await trapped.exited, 7);
    assert.match(trapped.output(), /got TERM/);
  });

  test('a foreground container dies with the cairn run that shows it', async () => {
    const fg = box.start('--name', 'fg', '--no-rm', '--', '/bin/sh', '-c', 'echo ready; exec /bin/sleep 100');
    await until(() => fg.output().includes('ready'), 'the container to start');
    fg.child.kill('SIGKILL');
    await fg.exited;
    await until(() => entry('fg')?.status === 'exited', 'the supervisor to end the container');
    assert.deepEqual(entry('fg')?.exit, { code: 137, signal: 9, oomKilled: false });
    assert.equal(box.cairn('rm', 'fg').code, 0);
  });

  test('detached: run, ps, logs, stop, ps, logs, rm', async () => {
    const started = box.cairn(
      'run',
      '-d',
      '--name',
      'web',
      '--',
      '/bin/sh',
      '-c',
      'echo hello from web; trap "echo stopping; exit 0" TERM; while :; do sleep 0.1; done',
    );
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stdout, 'web\n');
    // the command that started it has exited; the container runs on, supervised by the helper
    const running = entry('web')!;
    assert.equal(running.status, 'running');
    assert.ok(running.pid && running.supervisorPid);
    assert.equal(readFileSync(`/proc/${running.pid}/comm`, 'utf8').trim(), 'cairn-init');
    const ppid = readFileSync(`/proc/${running.supervisorPid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1];
    assert.notEqual(Number(ppid), process.pid);
    await until(() => box.cairn('logs', 'web').stdout.includes('hello from web'), 'the log line');

    const again = box.cairn('run', '-d', '--name', 'web', '--', '/bin/true');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a container named web already exists/);
    const rmRunning = box.cairn('rm', 'web');
    assert.equal(rmRunning.code, 1);
    assert.match(rmRunning.stderr, /container web is running/);

    const stopped = box.cairn('stop', 'web');
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(stopped.stdout, 'web: exited (0)\n');
    assert.deepEqual(entry('web')?.exit, { code: 0, signal: 0, oomKilled: false });
    assert.equal(box.cairn('logs', 'web').stdout, 'hello from web\nstopping\n');
    assert.match(box.cairn('ps').stdout, /^web\s+exited \(0\)/m);

    assert.equal(box.cairn('rm', 'web').code, 0);
    assert.equal(entry('web'), undefined);
    assert.equal(existsSync(join(box.dataRoot, 'web')), false);
    assert.match(box.cairn('logs', 'web').stderr, /no container named web/);
  });

  test('stop: SIGKILL after the timeout when SIGTERM is ignored; rm --force kills', async () => {
    assert.equal(box.cairn('run', '-d', '--name', 'stubborn', '--', '/bin/sh', '-c', 'trap "" TERM; echo ignoring; while :; do sleep 0.1; done').code, 0);
    await until(() => box.cairn('logs', 'stubborn').stdout.includes('ignoring'), 'the trap to be set');
    const stopped = box.cairn('stop', '-t', '0.3', 'stubborn');
    assert.equal(stopped.stdout, 'stubborn: exited (137)\n');
    assert.equal(box.cairn('rm', 'stubborn').code, 0);

    assert.equal(box.cairn('run', '-d', '--name', 'forced', '--', '/bin/sleep', '100').code, 0);
    const pid = entry('forced')!.pid!;
    assert.equal(box.cairn('rm', '--force', 'forced').code, 0);
    assert.equal(existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/stat`, 'utf8').includes('(cairn-init)'), false);
    assert.equal(entry('forced'), undefined);
  });

  test('a supervisor killed outright takes its container with it; rm removes the cgroups it left', async () => {
    assert.equal(box.cairn('run', '-d', '--userns', '--name', 'orphan', '--pids', '10', '--', '/bin/sleep', '100').code, 0);
    const { pid, supervisorPid } = entry('orphan')!;
    const state = JSON.parse(readFileSync(join(box.dir, 'run/containers/orphan/state.json'), 'utf8')) as { cgroups: string[] };
    assert.ok(state.cgroups.length > 0 && state.cgroups.every((d) => existsSync(d)), JSON.stringify(state.cgroups));
    process.kill(supervisorPid!, 'SIGKILL'); // started by this test, through cairn
    await until(() => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z'), 'the init to die');
    await until(() => entry('orphan')?.status === 'dead', 'ps to see it dead');
    assert.equal(box.cairn('rm', 'orphan').code, 0);
    assert.deepEqual(
      state.cgroups.filter((d) => existsSync(d)),
      [],
    );
  });

  test('logs --follow copies until the container exits', () => {
    assert.equal(box.cairn('run', '-d', '--name', 'talker', '--', '/bin/sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.2; done').code, 0);
    const followed = box.cairn('logs', '--follow', 'talker');
    assert.equal(followed.stdout, 'line 1\nline 2\nline 3\n');
    assert.equal(entry('talker')?.status, 'exited');
  });

  test('every failure to start is one line naming the step, with the conventional exit code', async () => {
    const before = ps().map((c) => c.name);
    const notFound = box.cairn('run', '--', '/no/such/command');
    assert.equal(notFound.code, 127);
    assert.match(notFound.stderr, /^cairn: container \S+: exec: \/no\/such\/command: No such file or directory\n$/);

    const notExecutable = box.cairn('run', '--', '/etc/hostname');
    assert.equal(notExecutable.code, 126);
    assert.match(notExecutable.stderr, /^cairn: container \S+: exec: \/etc\/hostname: Permission denied\n$/);

    const noSource = box.cairn('run', '-v', '/no/such/dir:/data', '--', '/bin/true');
    assert.equal(noSource.code, 125);
    assert.match(noSource.stderr, /^cairn: container \S+: bind: \/no\/such\/dir: No such file or directory\n$/);

    const noCwd = box.cairn('run', '-w', '/no/such/dir', '--', '/bin/true');
    assert.equal(noCwd.code, 125);
    assert.match(noCwd.stderr, /^cairn: container \S+: cwd: \/no\/such\/dir: No such file or directory\n$/);

    const empty = join(work, 'empty-usr');
    await mkdir(empty, { recursive: true });
    const badUsr = box.cairn('run', '--usr', empty, '--', '/bin/true');
    assert.equal(badUsr.code, 1);
    assert.match(badUsr.stderr, /^cairn: --usr \S+: has no bin\/, so it is not a \/usr tree\nhint: /);

    const badName = box.cairn('run', '--name', '../x', '--', '/bin/true');
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /^cairn: invalid container name '\.\.\/x'\n/);

    const layer = box.cairn('run', '--layer', '/tmp/app.erofs', '--', '/bin/true');
    assert.equal(layer.code, 1);
    // The host's own /usr was not built by cairn: no layer can be checked against it.
    assert.match(layer.stderr, /^cairn: \/usr has no lib\/cairn\/cairn\.lock .*not built by this cairn/);
    const image = box.cairn('run', 'oci-archive:/tmp/x.tar');
    assert.equal(image.code, 1);
    assert.match(image.stderr, /^cairn: oci-archive:\/tmp\/x\.tar: \/tmp\/x\.tar does not exist\n/);

    // nothing is left of containers that did not start
    assert.deepEqual(
      ps().map((c) => c.name),
      before,
    );
  });

  test('a bad spec is refused by the helper with one line naming it', async () => {
    const spec = join(work, 'bad.spec');
    await writeFile(spec, 'cairn-spawn-spec/1\0name\0x\0rootdir\0/tmp\0usr\0/usr\0arg\0/bin/true\0memory\0lots\0');
    const r = spawnSync(SPAWN, [spec], { encoding: 'utf8' });
    assert.equal(r.status, 125);
    assert.equal(r.stderr, "cairn-spawn: spec: 'memory lots': not a number up to 1125899906842624\n");
  });

  test(
    'an interactive run gets a terminal of its own devpts',
    { skip: spawnSync('sh', ['-c', 'command -v script']).status === 0 ? false : 'needs script (util-linux)' },
    () => {
      const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI} run -- /bin/sh -c 'tty; test -t 0 && echo stdin-is-a-tty; exit 3'`, '/dev/null'], {
        env: box.env,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
        input: '',
      });
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stdout, /\/dev\/pts\/0\r?\n/);
      assert.match(r.stdout, /stdin-is-a-tty/);
    },
  );
});
