// What a container from the shared /usr can and cannot do, checked from inside it on this
// machine (as root): its own PID, network and UTS namespaces, a read-only /usr, no mounts, the
// eleven capabilities, the seccomp allowlist, /proc masks, and limits the kernel enforces.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildProbe, CLI, fields, REPO, RuntimeSandbox, until } from '../fixtures/runtime.js';

const isRoot = process.getuid?.() === 0;
const hasGcc = spawnSync('sh', ['-c', 'command -v gcc']).status === 0;
const skip = !isRoot ? 'needs root' : !hasGcc ? 'needs gcc (the probe is compiled static)' : false;

// an unprivileged user's own namespaces may be switched off (sysctl, AppArmor)
const rootlessSkip = !isRoot
  ? 'needs root (to become nobody)'
  : spawnSync('su', ['nobody', '-s', '/bin/sh', '-c', 'unshare -U true']).status === 0
    ? false
    : 'unprivileged user namespaces are not available here';

/** podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP */
const DEFAULT_CAPS = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 31].reduce((m, bit) => m | (1n << BigInt(bit)), 0n);
const CAP_SYS_ADMIN = 21n;

/** Where this process's cgroup is in each mounted hierarchy: controller ('' for v2) -> directory. */
function ownCgroupDirs(): Map<string, string> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => {
      const [pre, post] = l.split(' - ');
      const f = (pre ?? '').split(' ');
      const p = (post ?? '').split(' ');
      return { root: f[3], point: f[4], fstype: p[0], super: (p[2] ?? '').split(',') };
    });
  const dirs = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n')) {
    const [, ctrls, path] = line.split(':') as [string, string, string];
    for (const ctrl of ctrls === '' ? [''] : ctrls.split(',')) {
      const m = mounts.find((x) => (ctrl === '' ? x.fstype === 'cgroup2' : x.fstype === 'cgroup' && x.super.includes(ctrl)));
      if (!m?.point) continue;
      const rel = m.root === '/' ? path : path.slice(m.root!.length);
      dirs.set(ctrl, join(m.point, rel).replace(/(.)\/$/, '$1'));
    }
  }
  return dirs;
}

function leftovers(name: string): string[] {
  return [...ownCgroupDirs().values()].flatMap((dir) =>
    readdirSync(dir)
      .filter((e) => e.startsWith(`cairn-${name}-`))
      .map((e) => join(dir, e)),
  );
}

describe('container isolation', { skip }, () => {
  let box: RuntimeSandbox;
  let work: string;
  let probe: string;

  before(async () => {
    execFileSync('make', ['-s', '-C', join(REPO, 'native')], { stdio: 'inherit' });
    box = await RuntimeSandbox.create('cairn-rt-iso-');
    work = await mkdtemp(join(tmpdir(), 'cairn-rt-probe-'));
    probe = await buildProbe(work);
  });
  after(async () => {
    await box?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const run = (...args: string[]) => box.cairn('run', ...args);

  test('the container sees only its own processes: init as 1, the command as 2', () => {
    const r = run('--', '/bin/sh', '-c', 'echo self=$$; for p in /proc/[0-9]*; do echo "${p#/proc/}=$(cat $p/comm)"; done');
    assert.equal(r.code, 0, r.stderr);
    const seen = fields(r.stdout);
    assert.equal(seen.self, '2');
    assert.equal(seen['1'], 'cairn-init');
    assert.equal(seen['2'], 'sh');
    // the shell, init, and the `cat` of the moment: nothing of the host
    const pids = Object.keys(seen).filter((k) => /^\d+$/.test(k));
    assert.ok(
      pids.every((p) => ['cairn-init', 'sh', 'cat'].includes(seen[p]!)),
      r.stdout,
    );
    assert.ok(!pids.includes(String(process.pid)) || seen[String(process.pid)] !== 'node');
  });

  test('the command inherits only stdin, stdout and stderr, and cannot look into its init', () => {
    const r = run(
      '--',
      '/bin/sh',
      '-c',
      'echo fds=$(exec ls /proc/self/fd); if readlink /proc/1/fd/0 || ls /proc/1/root/; then echo init=open; else echo init=closed; fi 2>/dev/null',
    );
    assert.equal(r.code, 0, r.stderr);
    // ls itself opens the directory as 3 while it reads it
    assert.deepEqual(fields(r.stdout), { fds: '0 1 2 3', init: 'closed' });
  });

  test('/usr and the root are read-only; /var, /home, /tmp are writable', () => {
    const r = run(
      '--',
      '/bin/sh',
      '-c',
      'for d in /usr /etc /var /home /tmp /root; do if touch $d/probe 2>/dev/null; then echo "$d=rw"; else echo "$d=ro"; fi; done',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fields(r.stdout), { '/usr': 'ro', '/etc': 'ro', '/var': 'rw', '/home': 'rw', '/tmp': 'rw', '/root': 'rw' });
    const write = run('--', '/bin/sh', '-c', 'echo x > /usr/bin/cairn-probe');
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);
    assert.equal(existsSync('/usr/bin/cairn-probe'), false);
  });

  test('capabilities: exactly the eleven defaults, no CAP_SYS_ADMIN, no_new_privs, seccomp filtering', () => {
    const r = run('--', '/bin/sh', '-c', 'grep -E "^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status | tr -d "\\t" | tr : =');
    assert.equal(r.code, 0, r.stderr);
    const s = fields(r.stdout);
    const eff = BigInt(`0x${s.CapEff}`);
    assert.equal(eff, DEFAULT_CAPS);
    assert.equal((eff >> CAP_SYS_ADMIN) & 1n, 0n);
    assert.equal(BigInt(`0x${s.CapBnd}`), DEFAULT_CAPS);
    assert.equal(BigInt(`0x${s.CapInh}`), 0n);
    assert.equal(BigInt(`0x${s.CapAmb}`), 0n);
    assert.equal(s.NoNewPrivs, '1');
    assert.equal(s.Seccomp, '2');
    const user = run('--user', '1000:1000', '--', '/bin/sh', '-c', 'id -u; id -g; grep CapEff /proc/self/status; pwd; touch ~/f && echo home-writable');
    assert.equal(user.code, 0, user.stderr);
    assert.match(user.stdout, /^1000\n1000\nCapEff:\s+0+\n\/home\/user\nhome-writable\n$/);
  });

  test('denied syscalls fail with EPERM (they work on the host), allowed ones work', () => {
    const host = fields(execFileSync(probe, ['control'], { encoding: 'utf8' }));
    assert.deepEqual(host, { keyctl: 'ok', unshare_user: 'ok' });
    const r = run('-v', `${work}:/probe:ro`, '--', '/probe/probe');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fields(r.stdout), {
      getpid: 'ok',
      unshare_mount: 'EPERM',
      unshare_user: 'EPERM',
      keyctl: 'EPERM',
      add_key: 'EPERM',
      mount: 'EPERM',
      umount: 'EPERM',
      setns: 'EPERM',
      ptrace: 'EPERM',
      bpf: 'EPERM',
      init_module: 'EPERM',
      io_uring_setup: 'EPERM',
      clone_newnet: 'EPERM',
      clone3: 'ENOSYS', // so that libc falls back to clone, whose flags the filter can check
      x32_getpid: 'EPERM',
      personality_query: 'ok',
      personality_bsd: 'EPERM',
      chroot: 'ok', // CAP_SYS_CHROOT is one of the eleven
      fork: 'ok',
    });
  });

  test('the mount command cannot mount either', () => {
    const r = run('--', '/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /permission denied|Operation not permitted/i);
  });

  test('--net none: only lo, down, and no routes; --net private: lo up', () => {
    const none = run(
      '--net',
      'none',
      '--',
      '/bin/sh',
      '-c',
      'ls /sys/class/net; cat /sys/class/net/lo/operstate; cat /sys/class/net/lo/flags; grep -v Iface /proc/net/route | wc -l',
    );
    assert.equal(none.code, 0, none.stderr);
    const [ifaces, operstate, flags, routes] = none.stdout.trim().split('\n');
    assert.equal(ifaces, 'lo');
    assert.equal(operstate, 'down');
    assert.equal(Number(flags) & 1, 0); // IFF_UP
    assert.equal(routes, '0');
    const priv = run('--net', 'private', '--', '/bin/sh', '-c', 'ls /sys/class/net; cat /sys/class/net/lo/flags');
    assert.equal(priv.code, 0, priv.stderr);
    const [pIfaces, pFlags] = priv.stdout.trim().split('\n');
    assert.equal(pIfaces, 'lo');
    assert.equal(Number(pFlags) & 1, 1);
  });

  test("the host name is the container's", () => {
    const r = run('--hostname', 'box-7', '--', '/bin/sh', '-c', 'hostname; cat /etc/hostname; grep -c box-7 /etc/hosts');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'box-7\nbox-7\n1\n');
  });

  test('/proc: kernel memory, keys and timers masked; /proc/sys and sysrq-trigger read-only', () => {
    const masked = ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug'].filter((p) => existsSync(p));
    assert.ok(masked.length > 0);
    const r = run(
      '--',
      '/bin/sh',
      '-c',
      [
        ...masked.map((p) => `echo "${p}=$(wc -c < ${p})"`),
        'if echo x > /proc/sys/kernel/domainname 2>/dev/null; then echo sys=rw; else echo sys=ro; fi',
        'if echo h > /proc/sysrq-trigger 2>/dev/null; then echo sysrq=rw; else echo sysrq=ro; fi',
        'echo "firmware=$(ls /sys/firmware | wc -l)"',
        'if touch /sys/probe 2>/dev/null; then echo sysfs=rw; else echo sysfs=ro; fi',
      ].join('; '),
    );
    assert.equal(r.code, 0, r.stderr);
    const got = fields(r.stdout);
    for (const p of masked) assert.equal(got[p], '0', `${p} should read empty`);
    assert.equal(got.sys, 'ro');
    assert.equal(got.sysrq, 'ro');
    assert.equal(got.firmware, '0');
    assert.equal(got.sysfs, 'ro');
  });

  test('the memory limit kills (OOM), and the exit status says so', async () => {
    const r = run('--name', 'oom-fg', '--memory', '32m', '-v', `${work}:/probe:ro`, '--', '/probe/probe', 'alloc');
    assert.equal(r.code, 137);
    assert.match(r.stderr, /oom-fg was killed for exceeding its memory limit \(out of memory\)/);
    assert.deepEqual(leftovers('oom-fg'), []);

    assert.equal(run('-d', '--name', 'oom-bg', '--memory', '32m', '-v', `${work}:/probe:ro`, '--', '/probe/probe', 'alloc').code, 0);
    const bg = () => (JSON.parse(box.cairn('ps', '--json').stdout) as { name: string; status: string; exit: unknown }[]).find((c) => c.name === 'oom-bg');
    await until(() => bg()?.status === 'exited', 'oom-bg to exit');
    assert.deepEqual(bg()?.exit, { code: 137, signal: 9, oomKilled: true });
  });

  test('the pids limit stops fork', () => {
    const r = run('--pids', '8', '-v', `${work}:/probe:ro`, '--', '/probe/probe', 'forks', '50');
    assert.equal(r.code, 0, r.stderr);
    const m = /^forked=(\d+) (\S+)$/.exec(r.stdout.trim());
    assert.ok(m, r.stdout);
    assert.equal(m[2], 'EAGAIN');
    // init and the probe count too
    assert.equal(Number(m[1]), 6);
  });

  test('limits live in a cgroup beneath our own, removed when the container ends', () => {
    const r = run('-d', '--name', 'cg', '--memory', '64m', '--pids', '20', '--cpus', '0.5', '--', '/bin/sleep', '60');
    assert.equal(r.code, 0, r.stderr);
    const own = ownCgroupDirs();
    const dirs = leftovers('cg');
    const byCtrl = (ctrl: string) => dirs.find((d) => d.startsWith(own.get(ctrl)! + '/'));
    const mem = byCtrl('memory') ?? byCtrl('');
    assert.ok(mem, `a memory cgroup under ${own.get('memory') ?? own.get('')}`);
    const memLimit = existsSync(join(mem, 'memory.max')) ? join(mem, 'memory.max') : join(mem, 'memory.limit_in_bytes');
    assert.equal(readFileSync(memLimit, 'utf8').trim(), String(64 << 20));
    const pids = byCtrl('pids') ?? byCtrl('');
    assert.equal(readFileSync(join(pids!, 'pids.max'), 'utf8').trim(), '20');
    const cpu = byCtrl('cpu') ?? byCtrl('');
    const quota = existsSync(join(cpu!, 'cpu.max'))
      ? readFileSync(join(cpu!, 'cpu.max'), 'utf8').trim().split(' ')[0]
      : readFileSync(join(cpu!, 'cpu.cfs_quota_us'), 'utf8').trim();
    assert.equal(quota, '50000');
    const ps = JSON.parse(box.cairn('ps', '--json').stdout) as { name: string; pid: number }[];
    const init = ps.find((c) => c.name === 'cg')!.pid;
    assert.ok(readFileSync(join(mem, 'cgroup.procs'), 'utf8').split('\n').includes(String(init)));
    assert.equal(box.cairn('stop', '-t', '0', 'cg').code, 0);
    assert.deepEqual(leftovers('cg'), []);
  });

  test('a --userns container maps its root to an unprivileged host id', () => {
    const r = run('--userns', '--', '/bin/sh', '-c', 'cat /proc/self/uid_map; touch /var/mine; stat -c %u /var/mine');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\s*0\s+100000\s+65536\n0\n$/);
  });

  test('run by an unprivileged user: a user namespace mapping only that user, as the container root', { skip: rootlessSkip }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-rt-rootless-'));
    try {
      chownSync(dir, 65534, 65534);
      const env = `CAIRN_RUN_DIR=${dir}/run CAIRN_STATE_DIR=${dir}/state`;
      const cli = (args: string) =>
        spawnSync('su', ['nobody', '-s', '/bin/sh', '-c', `cd / && ${env} ${process.execPath} ${CLI} run ${args}`], { encoding: 'utf8' });
      const r = cli(`-- /bin/sh -c 'cat /proc/self/uid_map; id -u; touch /var/mine && echo var-writable'`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^\s*0\s+65534\s+1\n0\nvar-writable\n$/);
      // limits need a cgroup this user may not create: refused, naming it
      const limited = cli('--memory 64m -- /bin/true');
      assert.equal(limited.status, 125);
      assert.match(limited.stderr, /^cairn: container \S+: cgroup: mkdir \S+: Permission denied\n$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('volumes: read-only and read-write binds', async () => {
    const dir = join(work, 'vol');
    await rm(dir, { recursive: true, force: true });
    execFileSync('mkdir', [dir]);
    await writeFile(join(dir, 'in'), 'from the host\n');
    const r = run(
      '-v',
      `${dir}:/data`,
      '-v',
      `${dir}:/ro:ro`,
      '--',
      '/bin/sh',
      '-c',
      'cat /data/in; echo out > /data/out; echo x > /ro/x 2>/dev/null || echo ro-refused',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from the host\nro-refused\n');
    assert.equal(readFileSync(join(dir, 'out'), 'utf8'), 'out\n');
    assert.equal(existsSync(join(dir, 'x')), false);
  });

  test('a symlink the container left in its /var cannot redirect a later mount onto the host', async () => {
    const target = join(work, 'escape-target');
    await rm(target, { recursive: true, force: true });
    execFileSync('mkdir', [target]);
    const plant = run('--name', 'esc', '--no-rm', '--', '/bin/ln', '-s', target, '/var/evil');
    assert.equal(plant.code, 0, plant.stderr);
    // a reboot: /run is gone, the data under /var/lib stays and the name is free again
    await rm(join(box.dir, 'run/containers/esc'), { recursive: true, force: true });
    const mount = run('--name', 'esc', '-v', `${work}:/var/evil/inside`, '--', '/bin/true');
    assert.equal(mount.code, 125);
    assert.match(mount.stderr, /bind: \/var\/evil\/inside: Too many levels of symbolic links/);
    assert.deepEqual(readdirSync(target), []);
  });
});
