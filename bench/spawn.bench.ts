// Start latency of a container running /bin/true, side by side in one run: cairn's helper
// alone, `cairn run` (the whole CLI), the library call without Node's start-up, crun and runc
// on an equivalent OCI bundle (host /usr bind-mounted read-only, the same namespaces, masks,
// capabilities and seccomp allowlist), bwrap with the same binds, and systemd-nspawn and
// podman when they are installed and work here. Prints medians and the ratio to the helper.
// crun refuses hybrid cgroup hosts (this project's CI machines), even with its cgroup manager
// disabled, so on such a host the whole benchmark re-runs itself in a private mount namespace
// where /sys/fs/cgroup is the cgroup2 hierarchy alone: every tool sees the same host.
// Usage (as root): node dist/bench/spawn.bench.js [RUNS]
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnHelperPath } from '../src/runtime/launch.js';
import { startContainer, waitForeground } from '../src/runtime/run.js';
import { encodeSpec } from '../src/runtime/spec.js';

const RUNS = Number(process.argv[2] ?? 30);
const WARMUP = 3;
const REPO = join(import.meta.dirname, '../..');
const CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];
const MASKED = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
const READ_ONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

interface Tool {
  name: string;
  /** Runs /bin/true once; returns an error text when the tool cannot. */
  run(i: number): string | null | Promise<string | null>;
}

function command(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string | null {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: env ?? process.env });
  if (r.error) return r.error.message;
  return r.status === 0 ? null : `exit ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').pop()}`;
}

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

/** The helper's allowlist, read from its source, so the OCI runtimes filter the same syscalls. */
async function allowedSyscalls(): Promise<string[]> {
  const header = await readFile(join(REPO, 'native/spawn-syscalls.h'), 'utf8');
  const allowed = header.slice(header.indexOf('allowed_syscalls[]'), header.indexOf('denied_syscalls[]'));
  return [...allowed.matchAll(/__NR_(\w+),/g)].map((m) => m[1]!).concat(['clone', 'personality']);
}

async function ociBundle(dir: string, cgroupsPath?: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  for (const d of ['usr', 'proc', 'dev', 'sys', 'tmp', 'run', 'etc']) await mkdir(join(rootfs, d), { recursive: true });
  for (const l of ['bin', 'sbin', 'lib', 'lib64']) if (existsSync(`/usr/${l}`)) await symlink(`usr/${l}`, join(rootfs, l));
  const config = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['/bin/true'],
      env: ['PATH=/usr/bin:/bin'],
      cwd: '/',
      noNewPrivileges: true,
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/usr', type: 'bind', source: '/usr', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
    ],
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].map((type) => ({ type })),
      maskedPaths: MASKED,
      readonlyPaths: READ_ONLY,
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: 1,
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [{ names: await allowedSyscalls(), action: 'SCMP_ACT_ALLOW' }],
      },
      ...(cgroupsPath ? { cgroupsPath } : {}),
    },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return rootfs;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

if (process.getuid?.() !== 0) {
  process.stderr.write('spawn.bench: needs root (namespaces, mounts)\n');
  process.exit(2);
}

const hybrid = existsSync('/sys/fs/cgroup/unified/cgroup.controllers');
if (hybrid && process.env.CAIRN_BENCH_CGROUP2 !== '1' && has('unshare')) {
  const r = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', 'sh', process.execPath, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, CAIRN_BENCH_CGROUP2: '1' } },
  );
  process.exit(r.status ?? 1);
}

const work = await mkdtemp(join(tmpdir(), 'cairn-spawn-bench-'));
// container state lives on /run, a tmpfs, as it does on a host
const runDir = await mkdtemp('/run/cairn-spawn-bench-');
const env = { ...process.env, CAIRN_RUN_DIR: runDir, CAIRN_STATE_DIR: join(work, 'state') };
process.env.CAIRN_RUN_DIR = env.CAIRN_RUN_DIR;
process.env.CAIRN_STATE_DIR = env.CAIRN_STATE_DIR;
try {
  const helperRoot = join(work, 'helper-root');
  await mkdir(helperRoot);
  const specFile = join(work, 'true.spec');
  // what `cairn run -- /bin/true` gives the helper, minus the data binds and /etc files
  await writeFile(
    specFile,
    encodeSpec({
      name: 'bench',
      hostname: 'bench',
      rootDir: helperRoot,
      root: { usr: '/usr', layers: [] },
      args: ['/bin/true'],
      env: ['PATH=/usr/bin:/bin'],
      cwd: '/',
      user: { uid: 0, gid: 0, groups: [] },
      net: 'private',
      binds: [],
      tmpfs: [],
      files: [],
      symlinks: [],
      limits: {},
      tty: false,
    }),
  );
  const helper = spawnHelperPath();
  const crunRoot = await ociBundle(join(work, 'crun'));
  await ociBundle(join(work, 'runc'), 'cairn-spawn-bench-runc'); // relative: beneath runc's own cgroup
  const cli = join(REPO, 'dist/src/cli/main.js');
  // the same command with only `run` loaded: what the CLI costs once commands load lazily
  const runOnly = join(work, 'run-only.mjs');
  await writeFile(
    runOnly,
    `import yargs from ${JSON.stringify(join(REPO, 'node_modules/yargs/index.mjs'))};\nimport run from ${JSON.stringify(join(REPO, 'dist/src/cli/run.js'))};\nawait yargs(process.argv.slice(2)).command(run).parseAsync();\n`,
  );
  const bwrapCaps = CAPS.flatMap((c) => ['--cap-add', c]);

  const tools: Tool[] = [
    { name: 'no container (/bin/true)', run: () => command('/bin/true', []) },
    { name: 'cairn helper alone', run: () => command(helper, [specFile]) },
    {
      name: 'cairn run (library)', // the CLI's work without Node's start-up and module loading
      run: async () => {
        const started = await startContainer({
          root: { layers: [] },
          command: ['/bin/true'],
          env: [],
          user: { uid: 0, gid: 0 },
          limits: {},
          net: 'private',
          binds: [],
          detach: false,
          tty: false,
          remove: true,
          userns: false,
        });
        const exit = await waitForeground(started, true);
        return exit.code === 0 ? null : `exit ${exit.code}`;
      },
    },
    { name: 'cairn run (CLI)', run: () => command(process.execPath, [cli, 'run', '--', '/bin/true'], env) },
    { name: 'cairn run (CLI, run only)', run: () => command(process.execPath, [runOnly, 'run', '--', '/bin/true'], env) },
  ];
  if (has('crun'))
    tools.push({
      name: 'crun run',
      run: (i) => command('crun', ['--cgroup-manager=disabled', '--root', join(work, 'crun-state'), 'run', '--bundle', join(work, 'crun'), `b${i}`]),
    });
  if (has('runc'))
    tools.push({ name: 'runc run', run: (i) => command('runc', ['--root', join(work, 'runc-state'), 'run', '--bundle', join(work, 'runc'), `b${i}`]) });
  if (has('bwrap')) {
    tools.push({
      name: 'bwrap',
      run: () =>
        command('bwrap', [
          '--unshare-pid',
          '--unshare-ipc',
          '--unshare-uts',
          '--unshare-net',
          '--unshare-cgroup',
          '--ro-bind',
          '/usr',
          '/usr',
          '--symlink',
          'usr/bin',
          '/bin',
          '--symlink',
          'usr/sbin',
          '/sbin',
          '--symlink',
          'usr/lib',
          '/lib',
          '--symlink',
          'usr/lib64',
          '/lib64',
          '--proc',
          '/proc',
          '--dev',
          '/dev',
          '--ro-bind',
          '/sys',
          '/sys',
          '--tmpfs',
          '/tmp',
          '--tmpfs',
          '/run',
          '--cap-drop',
          'ALL',
          ...bwrapCaps,
          '/bin/true',
        ]),
    });
  }
  if (has('systemd-nspawn')) {
    tools.push({
      name: 'systemd-nspawn',
      run: () => command('systemd-nspawn', ['--quiet', '--register=no', '--keep-unit', '-D', crunRoot, '--bind-ro=/usr', '/bin/true']),
    });
  }
  if (has('podman')) {
    const podman = [
      '--root',
      join(work, 'podman'),
      '--runroot',
      join(work, 'podman-run'),
      '--storage-driver=vfs',
      '--cgroup-manager=cgroupfs',
      '--events-backend=none',
    ];
    tools.push({
      name: 'podman run',
      run: () => command('podman', [...podman, 'run', '--rm', '--cgroups=disabled', '--network=none', '--rootfs', crunRoot, '-v', '/usr:/usr:ro', '/bin/true']),
    });
  }

  const times = new Map<string, number[]>(tools.map((t) => [t.name, []]));
  const skipped = new Map<string, string>();
  let n = 0;
  // interleaved rounds, so that a slow moment of this shared machine hits every tool alike
  for (let round = 0; round < WARMUP + RUNS; round++) {
    for (const tool of tools) {
      if (skipped.has(tool.name)) continue;
      const start = process.hrtime.bigint();
      const error = await tool.run(n++);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (error) skipped.set(tool.name, error);
      else if (round >= WARMUP) times.get(tool.name)!.push(ms);
    }
  }

  const base = median(times.get('cairn helper alone')!);
  process.stdout.write(`/bin/true in a container, median of ${RUNS} runs after ${WARMUP} warm-up, ${new Date().toISOString()}\n`);
  if (process.env.CAIRN_BENCH_CGROUP2 === '1')
    process.stdout.write('(hybrid cgroup host: all tools ran in a mount namespace with /sys/fs/cgroup = the cgroup2 hierarchy)\n');
  process.stdout.write(`${'tool'.padEnd(26)} ${'median ms'.padStart(10)} ${'x helper'.padStart(9)}\n`);
  for (const tool of tools) {
    const why = skipped.get(tool.name);
    if (why) {
      process.stdout.write(`${tool.name.padEnd(26)} skipped: ${why}\n`);
      continue;
    }
    const m = median(times.get(tool.name)!);
    process.stdout.write(`${tool.name.padEnd(26)} ${m.toFixed(1).padStart(10)} ${(m / base).toFixed(2).padStart(9)}\n`);
  }
  for (const missing of ['crun', 'runc', 'bwrap', 'systemd-nspawn', 'podman'].filter((t) => !has(t)))
    process.stdout.write(`${missing}: not installed, skipped\n`);
} finally {
  await rm(work, { recursive: true, force: true });
  await rm(runDir, { recursive: true, force: true });
}
