// What sharing one read-only /usr saves: N containers started the way cairn's runtime starts
// them (a per-container state folder with its generated /etc, a tmpfs root, the shared /usr
// bind-mounted read-only, in a mount namespace of their own) beside N containers given their own
// extracted copy of the same root (tar -x of the build's rootfs.tar, as image unpackers do). Each
// container reads the same set of files from its /usr (the binaries and shared libraries a start
// maps) and then sleeps. Measured per side, in one run: disk bytes written (/proc/self/io
// write_bytes, children included, and du of the state folders) and page cache (Cached in
// /proc/meminfo after dropping caches, and fincore's count of the read files' resident bytes).
// Usage: node dist/bench/sharing.bench.js [RECIPE] [--containers N] (as root; builds the
// recipe's rootfs first if images/<name>/<version>/rootfs.tar is missing).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../src/pipeline/build-image.js';
import { FetchCache } from '../src/debian/fetch-cache.js';
import { loadRecipe } from '../src/recipe/load.js';

const args = process.argv.slice(2);
const countAt = args.indexOf('--containers');
const count = countAt >= 0 ? Number(args[countAt + 1]) : 50;
const recipeFile = args.find((a, i) => !a.startsWith('--') && (countAt < 0 || i !== countAt + 1)) ?? 'recipes/tiny.yaml';
if (process.getuid?.() !== 0) throw new Error('the sharing benchmark needs root (mounts, namespaces, dropping caches)');
if (!Number.isInteger(count) || count < 1) throw new Error('--containers takes a whole number');

const recipe = await loadRecipe(recipeFile);
const buildDir = join('images', recipe.name, recipe.version);
if (!existsSync(join(buildDir, 'rootfs.tar')) || !existsSync(join(buildDir, 'rootfs', 'usr'))) {
  process.stderr.write(`building ${recipeFile} (rootfs stage) into ${buildDir}\n`);
  await buildImage(recipe, { stage: 'rootfs', cache: new FetchCache(process.env.CAIRN_CACHE) });
}
const usr = join(buildDir, 'rootfs', 'usr');
const rootfsTar = join(buildDir, 'rootfs.tar');

/** Regular files directly in `dir` and below it when `deep`, relative to /usr. */
async function filesIn(rel: string, deep: boolean): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(usr, rel), { withFileTypes: true }).catch(() => [])) {
    const path = `${rel}/${entry.name}`;
    if (entry.isFile()) found.push(path);
    else if (deep && entry.isDirectory()) found.push(...(await filesIn(path, deep)));
  }
  return found.sort();
}

// What starting programs reads: the executables and the shared libraries beside libc.
const multiarch = (await readdir(join(usr, 'lib'))).find((name) => /-linux-gnu$/.test(name));
const readSet = [...(await filesIn('bin', true)), ...(await filesIn('sbin', true)), ...(multiarch ? await filesIn(`lib/${multiarch}`, false) : [])];
const du = (path: string) => Number(execFileSync('du', ['-s', '-B1', '-x', path], { encoding: 'utf8' }).split('\t')[0]);
const readSetBytes = Number(
  execFileSync('du', ['-c', '-b', ...readSet.map((f) => join(usr, f))], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .at(-1)!
    .split('\t')[0],
);

function meminfo(field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
}

function writeBytes(): number {
  return Number(/^write_bytes: (\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
}

function dropCaches(): void {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Resident page-cache bytes of `files`, by fincore, in batches that fit a command line. */
function resident(files: string[]): number {
  let total = 0;
  for (let at = 0; at < files.length; at += 2000) {
    const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', ...files.slice(at, at + 2000)], { encoding: 'utf8' });
    for (const line of out.split('\n')) if (line.trim() !== '') total += Number(line.trim());
  }
  return total;
}

const ETC: Record<string, string> = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\n',
  group: 'root:x:0:\n',
  hosts: '127.0.0.1 localhost\n::1 localhost\n',
  'resolv.conf': 'nameserver 127.0.0.53\n',
};

interface Side {
  name: string;
  /** Makes container i's state on disk and returns the shell script that starts it. */
  prepare(i: number, state: string): Promise<string>;
  /** The files container i reads, as host paths, for fincore. */
  readFiles(i: number, state: string): string[];
}

const shared: Side = {
  name: 'shared /usr',
  async prepare(i, state) {
    for (const dir of ['root', 'var', 'home', 'etc']) await mkdir(join(state, dir), { recursive: true });
    for (const [name, text] of Object.entries({ ...ETC, hostname: `c${i}\n` })) await writeFile(join(state, 'etc', name), text);
    const root = join(state, 'root');
    return [
      `mount -t tmpfs -o size=16m,mode=0755 tmpfs ${root}`,
      `mkdir ${root}/usr ${root}/var ${root}/home ${root}/etc ${root}/tmp`,
      `mount --bind ${usr} ${root}/usr && mount -o remount,bind,ro ${root}/usr`,
      ...['var', 'home', 'etc'].map((dir) => `mount --bind ${join(state, dir)} ${root}/${dir}`),
      `cd ${root}/usr`,
    ].join(' && ');
  },
  readFiles: () => readSet.map((f) => join(usr, f)),
};

const copies: Side = {
  name: 'own copy',
  async prepare(_i, state) {
    const root = join(state, 'root');
    await mkdir(root, { recursive: true });
    execFileSync('tar', ['-xf', rootfsTar, '-C', root, '--numeric-owner']);
    return `cd ${root}/usr`;
  },
  readFiles: (_i, state) => readSet.map((f) => join(state, 'root', 'usr', f)),
};

/** Starts the container script in a mount namespace of its own; resolves once it has read its files. */
function start(setup: string): Promise<ChildProcess> {
  const script = `${setup} && cat "$@" > /dev/null && echo ready && exec sleep 3600`;
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...readSet], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`a container exited early (${code})`)));
  });
}

interface Result {
  prepareSeconds: number;
  startSeconds: number;
  writtenBytes: number;
  diskBytes: number;
  cachedBytes: number;
  residentBytes: number;
}

async function measure(side: Side, work: string): Promise<Result> {
  const states = Array.from({ length: count }, (_, i) => join(work, side.name.replace(/\W+/g, '-'), `c${i}`));
  dropCaches();
  const written = writeBytes();
  let clock = process.hrtime.bigint();
  const scripts: string[] = [];
  for (const [i, state] of states.entries()) scripts.push(await side.prepare(i, state));
  const prepareSeconds = Number(process.hrtime.bigint() - clock) / 1e9;
  // What the running containers hold, apart from what preparing them left in the cache.
  dropCaches();
  const cachedBefore = meminfo('Cached');
  clock = process.hrtime.bigint();
  const children = await Promise.all(scripts.map((script) => start(script)));
  const startSeconds = Number(process.hrtime.bigint() - clock) / 1e9;
  const cachedBytes = meminfo('Cached') - cachedBefore;
  const residentBytes = resident(side === shared ? shared.readFiles(0, states[0]!) : states.flatMap((state, i) => side.readFiles(i, state)));
  for (const child of children) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid!, 'SIGKILL');
    await exited;
  }
  execFileSync('sync');
  return {
    prepareSeconds,
    startSeconds,
    writtenBytes: writeBytes() - written,
    diskBytes: du(join(work, side.name.replace(/\W+/g, '-'))),
    cachedBytes,
    residentBytes,
  };
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

const work = await mkdtemp(join(tmpdir(), 'cairn-sharing-'));
try {
  const a = await measure(shared, work);
  await rm(join(work, 'shared-usr'), { recursive: true, force: true });
  const b = await measure(copies, work);
  const ratio = (x: number, y: number) => (y > 0 ? `${(x / y).toFixed(1)}x` : 'n/a');
  const rows: [string, string, string, string][] = [
    ['', shared.name, copies.name, 'copy / shared'],
    ['prepare (s)', a.prepareSeconds.toFixed(2), b.prepareSeconds.toFixed(2), ratio(b.prepareSeconds, a.prepareSeconds)],
    ['start + read (s)', a.startSeconds.toFixed(2), b.startSeconds.toFixed(2), ratio(b.startSeconds, a.startSeconds)],
    ['bytes written', bytes(a.writtenBytes), bytes(b.writtenBytes), ratio(b.writtenBytes, a.writtenBytes)],
    ['disk used (du)', bytes(a.diskBytes), bytes(b.diskBytes), ratio(b.diskBytes, a.diskBytes)],
    ['page cache (Cached)', bytes(a.cachedBytes), bytes(b.cachedBytes), ratio(b.cachedBytes, a.cachedBytes)],
    ['read files resident', bytes(a.residentBytes), bytes(b.residentBytes), ratio(b.residentBytes, a.residentBytes)],
  ];
  process.stdout.write(
    `${count} containers, ${recipeFile}: rootfs.tar ${bytes(du(rootfsTar))}, each reads ${readSet.length} files (${bytes(readSetBytes)}) from /usr; ${new Date().toISOString()}\n`,
  );
  for (const row of rows) process.stdout.write(`${row[0].padEnd(22)} ${row[1].padStart(12)} ${row[2].padStart(12)} ${row[3].padStart(14)}\n`);
  process.stdout.write('Cached is machine-wide (other processes add noise); fincore counts only the files the containers read.\n');
} finally {
  await rm(work, { recursive: true, force: true });
}
