// `cairn run`, the library half: claim the name, prepare the root, write the spec the helper
// gets, start it, record who supervises the container, and (in the foreground) wait for it.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CairnError } from '../errors.js';
import { etcFiles, homeOf, type EtcInput } from './etc-files.js';
import { launch, type Launched } from './launch.js';
import { prepareRoot, type PreparedRoot, type RootRequest } from './root.js';
import type { BindMount, ContainerSpec, IdMap, Limits, NetMode } from './spec.js';
import { checkName } from './spec.js';
import { createContainerDirs, processRef, removeContainerDirs, writeState, type ContainerPaths, type ContainerState, type ExitInfo } from './state.js';

/** Where `--userns` maps the container's ids on the host: 65536 ids from here. */
export const USERNS_BASE = 100000;
const USERNS_COUNT = 65536;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunRequest {
  name?: string;
  root: Omit<RootRequest, 'dataDir'>;
  command: string[];
  /** NAME=VALUE entries over the defaults (PATH, HOME, HOSTNAME, TERM, container). */
  env: string[];
  user: { uid: number; gid: number };
  cwd?: string;
  hostname?: string;
  limits: Limits;
  net: NetMode;
  binds: BindMount[];
  detach: boolean;
  tty: boolean;
  /** Delete state and data once a foreground container exits. */
  remove: boolean;
  /** Run in a user namespace (always, when cairn is not root). */
  userns: boolean;
}

export interface Started {
  name: string;
  paths: ContainerPaths;
  launched: Launched;
  /** Undoes what the root needed (layer mounts); call once the container is gone. */
  release(): Promise<void>;
}

function generatedName(command: string[]): string {
  const stem =
    basename(command[0] ?? 'c')
      .replace(/[^A-Za-z0-9_.-]/g, '')
      .replace(/^[.-]+/, '')
      .slice(0, 50) || 'c';
  return `${stem}-${randomBytes(3).toString('hex')}`;
}

function mergeEnv(defaults: string[], overrides: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of [...defaults, ...overrides]) byName.set(e.slice(0, e.indexOf('=')), e);
  return [...byName.values()];
}

function idMaps(req: RunRequest): { uidMap: IdMap[]; gidMap: IdMap[] } | undefined {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) {
    // unprivileged: our own id is the only one we may map, so the container runs as its root
    if (req.user.uid !== 0 || req.user.gid !== 0) throw new CairnError('--user needs root: without it only uid 0 exists in the container');
    const gid = process.getgid?.() ?? 0;
    return { uidMap: [{ inside: 0, outside: uid, count: 1 }], gidMap: [{ inside: 0, outside: gid, count: 1 }] };
  }
  if (!req.userns) return undefined;
  const map = [{ inside: 0, outside: USERNS_BASE, count: USERNS_COUNT }];
  return { uidMap: map, gidMap: map };
}

/** An OCI root has its own accounts and OS files: it gets only its names and resolver. */
function containerEtc(root: ContainerSpec['root'], input: EtcInput): Pick<ContainerSpec, 'files' | 'symlinks'> {
  if ('usr' in root) return etcFiles({ ...input, usr: root.usr });
  const names = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'];
  return { files: etcFiles(input).files.filter((f) => names.includes(f.path)), symlinks: [] };
}

/** The spec for a request; an OCI image's own command, environment and directory fill what the request leaves out. */
export function buildSpec(
  req: RunRequest,
  name: string,
  prepared: Pick<PreparedRoot, 'root' | 'image'>,
  paths: ContainerPaths,
  userns: ContainerSpec['userns'],
): ContainerSpec {
  const { root, image } = prepared;
  const hostname = req.hostname ?? name;
  const home = homeOf(req.user.uid);
  const env = mergeEnv(
    [
      `PATH=${DEFAULT_PATH}`,
      `HOME=${home}`,
      `HOSTNAME=${hostname}`,
      'container=cairn',
      ...(req.tty ? [`TERM=${process.env.TERM ?? 'xterm'}`] : []),
      ...(image?.env ?? []),
    ],
    req.env,
  );
  // the container's writable space; an OCI root brings its own /var and /home
  const data: BindMount[] = 'usr' in root ? ['var', 'home', 'root'].map((d) => ({ source: join(paths.dataDir, d), target: `/${d}`, readOnly: false })) : [];
  return {
    name,
    hostname,
    rootDir: paths.rootDir,
    root,
    args: req.command.length > 0 ? [...(image?.entrypoint ?? []), ...req.command] : (image?.args ?? []),
    env,
    cwd: req.cwd ?? (image?.cwd || (home === '/nonexistent' ? '/' : home)),
    user: { ...req.user, groups: [] },
    net: req.net,
    binds: [...data, ...req.binds],
    tmpfs: [],
    ...containerEtc(root, { hostname, user: req.user, net: req.net }),
    limits: req.limits,
    userns,
    tty: req.tty,
  };
}

/** The host id a container id has under the maps (the id itself without a user namespace). */
function hostId(id: number, maps: IdMap[] | undefined): number {
  const m = maps?.find((x) => id >= x.inside && id < x.inside + x.count);
  return maps ? (m ? m.outside + id - m.inside : -1) : id;
}

/** The data directories belong to the container's root, and a non-root user gets its home in /home. */
async function prepareWritableSpace(paths: ContainerPaths, user: { uid: number; gid: number }, userns: ContainerSpec['userns']): Promise<void> {
  // without root, the caller's own id is the container's root already, and chown is not ours to do
  if (process.getuid?.() !== 0) return;
  if (userns) {
    for (const d of ['var', 'home', 'root']) await chown(join(paths.dataDir, d), hostId(0, userns.uidMap), hostId(0, userns.gidMap));
  }
  const home = homeOf(user.uid);
  if (!home.startsWith('/home/')) return;
  const dir = join(paths.dataDir, home);
  await mkdir(dir, { recursive: true });
  const [uid, gid] = [hostId(user.uid, userns?.uidMap), hostId(user.gid, userns?.gidMap)];
  if (uid < 0 || gid < 0) throw new CairnError(`--user ${user.uid}:${user.gid} is outside the container's user namespace`, '--userns maps ids 0-65535');
  await chown(dir, uid, gid);
}

/** Starts a container; resolves once its command runs. Everything made for it is undone if it cannot start. */
export async function startContainer(req: RunRequest): Promise<Started> {
  if (req.detach && req.remove) throw new CairnError('--rm applies to foreground containers; remove a detached one with "cairn rm"');
  const name = req.name ?? generatedName(req.command);
  checkName(name);
  const userns = idMaps(req);
  let prepared: PreparedRoot | undefined;
  let paths: ContainerPaths | undefined;
  try {
    paths = await createContainerDirs(name).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EACCES' || err.code === 'EROFS')
        throw new CairnError(
          `cannot create the container's directories: ${err.message}`,
          'run as root, or set CAIRN_RUN_DIR and CAIRN_STATE_DIR to directories you own',
        );
      throw err;
    });
    prepared = await prepareRoot({ ...req.root, dataDir: paths.dataDir });
    await prepareWritableSpace(paths, req.user, userns);
    const spec = buildSpec(req, name, prepared, paths, userns);
    if (spec.args.length === 0) throw new CairnError('no command to run', 'put it after --, e.g. cairn run -- /bin/sh -c "echo hi"');
    const state: ContainerState = {
      name,
      createdAt: new Date().toISOString(),
      command: spec.args,
      usr: 'usr' in prepared.root ? prepared.root.usr : prepared.root.rootfs,
      net: req.net,
      detached: req.detach,
    };
    await writeState(state);
    const log = req.detach ? openSync(paths.logFile, 'a', 0o640) : undefined;
    let launched: Launched;
    try {
      launched = await launch(spec, { stdio: log === undefined ? 'inherit' : ['ignore', log, log], exitFile: paths.exitFile, foreground: !req.detach });
    } finally {
      if (log !== undefined) closeSync(log);
    }
    await writeState({ ...state, supervisor: await processRef(launched.supervisor.pid!), init: await processRef(launched.initPid), cgroups: launched.cgroups });
    return { name, paths, launched, release: prepared.release };
  } catch (err) {
    await prepared?.release();
    if (paths) await removeContainerDirs(name);
    throw err;
  }
}

/** Waits for a foreground container (launch passes signals on) and removes it afterwards when asked. */
export async function waitForeground(started: Started, remove: boolean): Promise<ExitInfo> {
  try {
    return await started.launched.exited;
  } finally {
    await started.release();
    if (remove) await removeContainerDirs(started.name);
  }
}
