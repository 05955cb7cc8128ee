// System users and groups that packages declare in sysusers.d(5), added as systemd-sysusers
// would at first boot, but at build time and deterministically: fixed ids first, then free ids
// from 999 downward handed out in name order, keeping a user's uid equal to its group's gid
// whenever both are free.
import { CairnError } from '../errors.js';
import type { AccountDb } from './accounts.js';

const SYSTEM_ID_MAX = 999;
const DEFAULT_SHELL = '/usr/sbin/nologin';
const DEFAULT_HOME = '/';
const LOCKED = '!*';

interface UserItem {
  name: string;
  uid: number | null;
  /** Primary group: a gid, a group name, or null for the group of the user's own name. */
  group: number | string | null;
  gecos: string;
  home: string;
  shell: string;
}

interface GroupItem {
  name: string;
  gid: number | null;
}

export interface SysusersConfig {
  users: UserItem[];
  groups: GroupItem[];
  members: { user: string; group: string }[];
}

export function emptySysusers(): SysusersConfig {
  return { users: [], groups: [], members: [] };
}

/** Splits a line into words; double or single quotes group words and are removed. */
function words(line: string, where: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    const word = m[1] ?? m[2] ?? m[3];
    if (m[3] !== undefined && /["']/.test(word)) throw new CairnError(`${where}: unbalanced quote`, 'see sysusers.d(5)');
    out.push(word);
  }
  return out;
}

const orDefault = (value: string | undefined, fallback: string) => (value === undefined || value === '-' ? fallback : value);

function parseNumeric(text: string): number | null {
  return /^[0-9]+$/.test(text) ? Number(text) : null;
}

/**
 * Adds the lines of one sysusers.d file to `config`. The first declaration of a name wins, as
 * files are read in the order systemd reads them.
 */
export function parseSysusers(text: string, origin: string, config: SysusersConfig): void {
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${origin}:${index + 1}`;
    const [type, name, id, gecos, home, shell] = words(line, where);
    if (name === undefined || name === '-') throw new CairnError(`${where}: "${type}" needs a name`, 'see sysusers.d(5)');
    switch (type) {
      case 'u':
      case 'u!': {
        if (config.users.some((u) => u.name === name)) return;
        // An id may be "uid", "uid:gid", "uid:group", "-" or a path (ids taken from a file's
        // owner at run time); a path and "-" both mean: allocate.
        const [uidText, groupText] = (id ?? '-').split(':');
        const group = groupText === undefined || groupText === '-' ? null : (parseNumeric(groupText) ?? groupText);
        config.users.push({
          name,
          uid: parseNumeric(uidText),
          group,
          gecos: orDefault(gecos, ''),
          home: orDefault(home, DEFAULT_HOME),
          shell: orDefault(shell, DEFAULT_SHELL),
        });
        return;
      }
      case 'g':
        if (!config.groups.some((g) => g.name === name)) config.groups.push({ name, gid: parseNumeric(id ?? '-') });
        return;
      case 'm':
        if (id === undefined) throw new CairnError(`${where}: "m" needs a user and a group`, 'see sysusers.d(5)');
        config.members.push({ user: name, group: id });
        return;
      case 'r':
        // Ranges widen where ids may come from; the default system range serves every package.
        return;
      default:
        throw new CairnError(`${where}: unknown line type "${type}"`, 'sysusers.d(5) knows u, g, m and r');
    }
  });
}

function byName<T extends { name: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function freeId(db: AccountDb, what: string): number {
  for (let id = SYSTEM_ID_MAX; id > 0; id--) {
    if (!db.uidTaken(id) && !db.gidTaken(id)) return id;
  }
  throw new CairnError(`no free system id left for ${what}`, 'too many system users and groups for the range 1-999');
}

/** Adds what `config` declares and `db` lacks; existing names keep their ids. */
export function applySysusers(db: AccountDb, config: SysusersConfig): void {
  // Members name users and groups that may be declared nowhere else; sysusers creates them.
  for (const m of config.members) {
    if (!config.users.some((u) => u.name === m.user))
      config.users.push({ name: m.user, uid: null, group: null, gecos: '', home: DEFAULT_HOME, shell: DEFAULT_SHELL });
    if (!config.groups.some((g) => g.name === m.group)) config.groups.push({ name: m.group, gid: null });
  }
  // Each user without another primary group gets a group of its name, preferably with gid = uid.
  const groups = [...config.groups];
  for (const u of config.users) {
    if ((u.group === null || u.group === u.name) && !groups.some((g) => g.name === u.name)) groups.push({ name: u.name, gid: u.uid });
    else if (typeof u.group === 'number' && !groups.some((g) => g.name === u.name) && !db.gidTaken(u.group)) groups.push({ name: u.name, gid: u.group });
  }
  const fixedFirst = <T extends { name: string }>(items: T[], id: (i: T) => number | null) => [
    ...byName(items.filter((i) => id(i) !== null)),
    ...byName(items.filter((i) => id(i) === null)),
  ];

  for (const g of fixedFirst(groups, (g) => g.gid)) {
    if (db.groups.has(g.name)) continue;
    const gid = g.gid !== null && !db.gidTaken(g.gid) ? g.gid : freeId(db, `group ${g.name}`);
    db.groups.set(g.name, { name: g.name, gid, members: [], hash: LOCKED });
  }
  for (const u of fixedFirst(config.users, (u) => u.uid)) {
    if (db.users.has(u.name)) continue;
    const own = db.groups.get(u.name);
    let uid: number;
    if (u.uid !== null && !db.uidTaken(u.uid)) uid = u.uid;
    else if (own !== undefined && !db.uidTaken(own.gid)) uid = own.gid;
    else uid = freeId(db, `user ${u.name}`);
    let gid: number;
    if (typeof u.group === 'number') gid = u.group;
    else {
      const group = db.groups.get(u.group ?? u.name);
      if (group === undefined) throw new CairnError(`sysusers.d: user ${u.name} names primary group ${u.group}, which no package declares`);
      gid = group.gid;
    }
    db.users.set(u.name, { name: u.name, uid, gid, gecos: u.gecos, home: u.home, shell: u.shell, hash: LOCKED });
  }
  for (const m of config.members) db.addMember(m.group, m.user);
}
