// Applies an Ignition config to a host's writable root, all or nothing as far as a file system
// allows: every file's contents are read and verified, every account and owner resolved, and
// every path checked before the first write; then groups and users, homes and SSH keys,
// directories, files, links and units. Writes go through the same confined tree the build uses,
// so no path or symlink in the config (or already on the host) can lead outside the root or into
// /usr. A cut mid-way leaves `started` behind: the next boot applies the whole config again,
// treating the paths it had started on as its own.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { runTool } from '../host-tool.js';
import { parseAccountFiles, renderAccounts, type AccountDb } from '../rootfs/accounts.js';
import { Tree, TreePathError, type Owner } from '../rootfs/tree.js';
import { applyUnits } from '../rootfs/units.js';
import { pathProblem, type IgnitionConfig, type Owner as ConfigOwner } from './config.js';
import { readResource } from './contents.js';

/** Where a host records its provisioning, relative to its root. */
export const PROVISION_STATE = 'var/lib/cairn/provision';
export const PROVISIONED = `${PROVISION_STATE}/provisioned.json`;
const STARTED = `${PROVISION_STATE}/started.json`;
const FACTORY = 'usr/share/factory';
const ROOT_OWNER = { uid: 0, gid: 0 };

export interface ProvisionReport {
  users: string[];
  groups: string[];
  files: string[];
  directories: string[];
  links: string[];
  units: { name: string; enabled: boolean; masked: boolean }[];
  /** Units the config enabled, to start once systemd has read them. */
  toStart: string[];
  hostname: string | null;
}

interface Planned {
  files: { path: string; data: Buffer; mode: number; overwrite: boolean; user?: ConfigOwner; group?: ConfigOwner }[];
}

const rel = (path: string): string => path.replace(/^\/+/, '');

/** Refuses a path outside the writable root, or one whose way there on this host leaves the root (a planted symlink). */
function confine(path: string, where: string, tree?: Tree): void {
  const problem = pathProblem(path);
  if (problem) throw new CairnError(`${where}: ${problem}`);
  try {
    tree?.checkWritable(rel(path));
  } catch (err) {
    if (!(err instanceof TreePathError)) throw err;
    throw new CairnError(`${where}: ${path}: ${err.message}`, 'provisioning writes only inside the writable root; remove the symlink or choose another path');
  }
}

function readAccounts(root: string): AccountDb {
  const read = (name: string): string => readFileSync(join(root, 'etc', name), 'utf8');
  return parseAccountFiles({ passwd: read('passwd'), shadow: read('shadow'), group: read('group'), gshadow: read('gshadow') }, `${root}/etc`);
}

function resolveOwner(db: AccountDb, user: ConfigOwner | undefined, group: ConfigOwner | undefined, where: string): Owner {
  const uid = user?.id ?? (user?.name ? db.users.get(user.name)?.uid : 0);
  if (uid === undefined) throw new CairnError(`${where}: user ${user!.name} does not exist (on the host or in passwd.users)`);
  // Ignition's default owner is root, for the group as for the user.
  const gid = group?.id ?? (group?.name ? db.groups.get(group.name)?.gid : 0);
  if (gid === undefined) throw new CairnError(`${where}: group ${group!.name} does not exist (on the host or in passwd.groups)`);
  return { uid, gid };
}

function nextId(taken: (id: number) => boolean): number {
  let id = 1000;
  while (taken(id)) id++;
  return id;
}

/** Groups, then users: new ones created as useradd would (own group, home under /home), existing ones changed. */
function applyAccounts(db: AccountDb, config: IgnitionConfig): { users: string[]; groups: string[] } {
  const groups: string[] = [];
  for (const g of config.passwd?.groups ?? []) {
    const existing = db.groups.get(g.name);
    if (existing) {
      if (g.gid != null && g.gid !== existing.gid) throw new CairnError(`passwd.groups: ${g.name} exists on the host with gid ${existing.gid}, not ${g.gid}`);
      continue;
    }
    const gid = g.gid ?? nextId((id) => db.gidTaken(id));
    if (db.gidTaken(gid)) throw new CairnError(`passwd.groups: ${g.name}: gid ${gid} is already used on the host`);
    db.groups.set(g.name, { name: g.name, gid, members: [], hash: '!' });
    groups.push(g.name);
  }
  const users: string[] = [];
  for (const u of config.passwd?.users ?? []) {
    const where = `passwd.users: ${u.name}`;
    const existing = db.users.get(u.name);
    if (existing) {
      if (u.uid != null && u.uid !== existing.uid) throw new CairnError(`${where} exists on the host with uid ${existing.uid}, not ${u.uid}`);
      if (u.passwordHash) existing.hash = u.passwordHash;
      if (u.gecos != null) existing.gecos = u.gecos;
      if (u.shell) existing.shell = u.shell;
      if (u.homeDir) existing.home = u.homeDir;
    } else {
      const uid = u.uid ?? nextId((id) => db.uidTaken(id) || (!u.primaryGroup && !u.noUserGroup && db.gidTaken(id)));
      if (db.uidTaken(uid)) throw new CairnError(`${where}: uid ${uid} is already used on the host`);
      let gid: number;
      if (u.primaryGroup) {
        const g = db.groups.get(u.primaryGroup);
        if (!g) throw new CairnError(`${where}: primary group ${u.primaryGroup} does not exist`);
        gid = g.gid;
      } else if (u.noUserGroup) {
        gid = db.groups.get('users')?.gid ?? 100;
      } else {
        if (db.groups.has(u.name) || db.gidTaken(uid))
          throw new CairnError(`${where}: its own group would clash with an existing group`, 'name a primaryGroup');
        db.groups.set(u.name, { name: u.name, gid: uid, members: [], hash: '!' });
        gid = uid;
      }
      db.users.set(u.name, {
        name: u.name,
        uid,
        gid,
        gecos: u.gecos ?? '',
        home: u.homeDir ?? `/home/${u.name}`,
        shell: u.shell ?? '/bin/bash',
        hash: u.passwordHash ?? '!',
      });
    }
    for (const extra of u.groups ?? []) {
      if (!db.groups.has(extra)) throw new CairnError(`${where}: group ${extra} does not exist on the host`, 'declare it under passwd.groups');
      db.addMember(extra, u.name);
    }
    users.push(u.name);
  }
  return { users, groups };
}

/**
 * What is at `path` may be replaced: overwrite was asked for, the last try wrote it, it already
 * holds `data`, or it is the image's own default (a host-specific file replaces the fleet's).
 */
function replaceable(tree: Tree, root: string, path: string, data: Buffer, overwrite: boolean, ours: Set<string>): boolean {
  if (overwrite || ours.has(path)) return true;
  const st = tree.lstat(rel(path));
  if (st === undefined) return true;
  if (!st.isFile()) return false;
  const present = readFileSync(tree.hostPath(rel(path)));
  const factory = join(root, FACTORY, path);
  return present.equals(data) || (existsSync(factory) && present.equals(readFileSync(factory)));
}

/** Reads and verifies everything the config fetches, before anything is written. */
async function plan(config: IgnitionConfig, tree: Tree): Promise<Planned> {
  const files = await Promise.all(
    (config.storage?.files ?? []).map(async (f, i) => {
      const where = `storage.files[${i}] (${f.path})`;
      confine(f.path, where, tree);
      return {
        path: f.path,
        data: await readResource(f.contents, where),
        mode: f.mode ?? 0o644,
        overwrite: f.overwrite ?? false,
        user: f.user,
        group: f.group,
      };
    }),
  );
  return { files };
}

export interface ApplyOptions {
  /** The host's root (/ on a host; a folder in tests). */
  root: string;
  /** What the record names as the config's origin. */
  source: string;
  configText: string;
  log?: (line: string) => void;
}

export async function applyConfig(config: IgnitionConfig, o: ApplyOptions): Promise<ProvisionReport> {
  const log = o.log ?? (() => undefined);
  const tree = new Tree(o.root);
  const planned = await plan(config, tree);
  const startedPath = join(o.root, STARTED);
  const ours = new Set<string>(existsSync(startedPath) ? (JSON.parse(readFileSync(startedPath, 'utf8')) as { paths: string[] }).paths : []);
  const db = readAccounts(o.root);
  const accounts = applyAccounts(db, config);
  // Owners and overwrites checked for everything before the first write.
  const owners = planned.files.map((f, i) => resolveOwner(db, f.user, f.group, `storage.files[${i}] (${f.path})`));
  const dirs = (config.storage?.directories ?? []).map((d, i) => {
    const where = `storage.directories[${i}] (${d.path})`;
    confine(d.path, where, tree);
    return { ...d, owner: resolveOwner(db, d.user, d.group, where) };
  });
  const links = (config.storage?.links ?? []).map((l, i) => {
    const where = `storage.links[${i}] (${l.path})`;
    confine(l.path, where, tree);
    if (l.hard) confine(l.target, where, tree);
    return { ...l, owner: resolveOwner(db, l.user, l.group, where) };
  });
  planned.files.forEach((f, i) => {
    const st = tree.lstat(rel(f.path));
    if (st?.isDirectory()) throw new CairnError(`storage.files[${i}] (${f.path}): a directory is there`);
    if (!replaceable(tree, o.root, f.path, f.data, f.overwrite, ours)) {
      throw new CairnError(`storage.files[${i}] (${f.path}) already exists on the host`, 'set "overwrite": true to replace it');
    }
  });
  for (const [i, l] of links.entries()) {
    const st = tree.lstat(rel(l.path));
    // Ignition's rule: what is there stays unless overwrite says otherwise (the same link again is no change).
    const same = st?.isSymbolicLink() && !l.hard && readlinkSync(tree.find(rel(l.path))!) === l.target;
    if (st && !(l.overwrite || ours.has(l.path) || same))
      throw new CairnError(`storage.links[${i}] (${l.path}) already exists on the host`, 'set "overwrite": true to replace it');
  }
  const units = config.systemd?.units ?? [];
  const touched = [
    ...planned.files.map((f) => f.path),
    ...links.map((l) => l.path),
    ...units.flatMap((u) => [`/etc/systemd/system/${u.name}`, ...(u.dropins ?? []).map((d) => `/etc/systemd/system/${u.name}.d/${d.name}`)]),
  ];
  for (const u of config.passwd?.users ?? []) {
    const account = db.users.get(u.name)!;
    if (!u.noCreateHome || (u.sshAuthorizedKeys ?? []).length) confine(`${account.home}/.ssh/authorized_keys`, `passwd.users: ${u.name}: homeDir`, tree);
  }
  for (const path of [...touched, '/etc/passwd', '/etc/shadow', '/etc/group', '/etc/gshadow', `/${STARTED}`]) confine(path, 'provisioning', tree);
  // The state folder for the atomic writes below (the tree makes missing parents, root's and 0755).
  if (tree.lstat(PROVISION_STATE) === undefined) tree.mkdir(PROVISION_STATE, 0o755, ROOT_OWNER);
  await writeFileAtomic(startedPath, JSON.stringify({ paths: [...new Set([...ours, ...touched])] }) + '\n', 0o600);

  log(`accounts: ${accounts.users.length} users, ${accounts.groups.length} new groups`);
  const files = renderAccounts(db, Math.floor(Date.now() / 86_400_000));
  const shadowGid = db.groups.get('shadow')?.gid ?? 0;
  await tree.writeFile('etc/passwd', [Buffer.from(files.passwd)], 0o644, ROOT_OWNER);
  await tree.writeFile('etc/group', [Buffer.from(files.group)], 0o644, ROOT_OWNER);
  await tree.writeFile('etc/shadow', [Buffer.from(files.shadow)], 0o640, { uid: 0, gid: shadowGid });
  await tree.writeFile('etc/gshadow', [Buffer.from(files.gshadow)], 0o640, { uid: 0, gid: shadowGid });
  for (const u of config.passwd?.users ?? []) {
    const account = db.users.get(u.name)!;
    const owner = { uid: account.uid, gid: account.gid };
    if (u.noCreateHome && !(u.sshAuthorizedKeys ?? []).length) continue;
    if (tree.lstat(rel(account.home)) === undefined) tree.mkdir(rel(account.home), 0o700, owner);
    if ((u.sshAuthorizedKeys ?? []).length === 0) continue;
    const ssh = `${rel(account.home)}/.ssh`;
    if (tree.lstat(ssh) === undefined) tree.mkdir(ssh, 0o700, owner);
    await tree.writeFile(`${ssh}/authorized_keys`, [Buffer.from(u.sshAuthorizedKeys!.join('\n') + '\n')], 0o600, owner);
  }
  for (const d of dirs) {
    tree.mkdir(rel(d.path), d.mode ?? 0o755, d.owner);
  }
  for (const [i, f] of planned.files.entries()) {
    await tree.writeFile(rel(f.path), [f.data], f.mode, owners[i]!);
  }
  for (const l of links) {
    if (l.hard) tree.hardlink(rel(l.path), rel(l.target));
    else tree.symlink(rel(l.path), l.target, l.owner);
  }
  const enable: string[] = [];
  const mask: string[] = [];
  for (const u of units) {
    if (u.contents != null) {
      await tree.writeFile(`etc/systemd/system/${u.name}`, [Buffer.from(u.contents)], 0o644, ROOT_OWNER);
    }
    for (const d of u.dropins ?? []) {
      await tree.writeFile(`etc/systemd/system/${u.name}.d/${d.name}`, [Buffer.from(d.contents ?? '')], 0o644, ROOT_OWNER);
    }
    if (u.enabled) enable.push(u.name);
    if (u.mask) mask.push(u.name);
  }
  applyUnits(tree, { units: { enable, mask }, file: 'systemd.units' });
  const hostnameFile = planned.files.find((f) => f.path === '/etc/hostname');
  const report: ProvisionReport = {
    ...accounts,
    files: planned.files.map((f) => f.path),
    directories: dirs.map((d) => d.path),
    links: links.map((l) => l.path),
    units: units.map((u) => ({ name: u.name, enabled: u.enabled === true, masked: u.mask === true })),
    toStart: enable,
    hostname: hostnameFile ? hostnameFile.data.toString('utf8').trim() : null,
  };
  // Everything above on disk before the record that says it is done.
  await runTool('sync', ['-f', o.root]);
  const record = { source: o.source, sha256: createHash('sha256').update(o.configText).digest('hex'), at: new Date().toISOString(), ...report };
  await writeFileAtomic(join(o.root, PROVISIONED), JSON.stringify(record, null, 2) + '\n', 0o600);
  return report;
}
