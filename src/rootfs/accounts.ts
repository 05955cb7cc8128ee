// The account database of the image (/etc/passwd, group, shadow, gshadow), built declaratively:
// base-passwd's master files, then the system users packages declare in sysusers.d, then the
// recipe's users and groups. Written sorted by id so the same inputs give the same bytes.
import type { Recipe } from '../recipe/types.js';
import { CairnError } from '../errors.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
  /** The shadow password field: a crypt(3) hash, or "*" / "!" / "!*" for a locked account. */
  hash: string;
}

export interface Group {
  name: string;
  gid: number;
  members: string[];
  hash: string;
}

export class AccountDb {
  readonly users = new Map<string, Account>();
  readonly groups = new Map<string, Group>();

  uidTaken(uid: number): boolean {
    for (const u of this.users.values()) if (u.uid === uid) return true;
    return false;
  }

  gidTaken(gid: number): boolean {
    for (const g of this.groups.values()) if (g.gid === gid) return true;
    return false;
  }

  addMember(group: string, user: string): void {
    const g = this.groups.get(group);
    if (g !== undefined && !g.members.includes(user)) g.members.push(user);
  }
}

/** The accounts of an image without base-passwd: root alone. */
export function minimalAccounts(): AccountDb {
  const db = new AccountDb();
  db.users.set('root', { name: 'root', uid: 0, gid: 0, gecos: 'root', home: '/root', shell: '/bin/sh', hash: '*' });
  db.groups.set('root', { name: 'root', gid: 0, members: [], hash: '*' });
  return db;
}

function masterLines(text: string, fields: number, origin: string): string[][] {
  const rows: string[][] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const row = line.split(':');
    if (row.length !== fields) throw new CairnError(`${origin}:${index + 1}: expected ${fields} colon-separated fields, got ${row.length}`);
    rows.push(row);
  });
  return rows;
}

function parseId(text: string, origin: string): number {
  if (!/^[0-9]+$/.test(text)) throw new CairnError(`${origin}: "${text}" is not a numeric id`);
  return Number(text);
}

/** base-passwd's passwd.master and group.master, whose password fields go to shadow. */
export function parseMasters(passwd: string, group: string, origin: string): AccountDb {
  const db = new AccountDb();
  for (const [name, hash, gid, members] of masterLines(group, 4, `${origin}/group.master`)) {
    db.groups.set(name, { name, gid: parseId(gid, `${origin}/group.master`), members: members === '' ? [] : members.split(','), hash });
  }
  for (const [name, hash, uid, gid, gecos, home, shell] of masterLines(passwd, 7, `${origin}/passwd.master`)) {
    db.users.set(name, { name, uid: parseId(uid, `${origin}/passwd.master`), gid: parseId(gid, `${origin}/passwd.master`), gecos, home, shell, hash });
  }
  return db;
}

const RECIPE_HINT = 'pick names and ids that the installed packages do not use (recipe ids from 1000 up)';

/** Adds the recipe's groups, then its users with their primary and supplementary groups. */
export function applyRecipeAccounts(db: AccountDb, recipe: Pick<Recipe, 'users' | 'groups' | 'file'>): void {
  for (const g of recipe.groups) {
    const existing = db.groups.get(g.name);
    if (existing !== undefined) {
      if (existing.gid === g.gid) continue;
      throw new CairnError(`${recipe.file}: group ${g.name} (gid ${g.gid}) already exists in the image with gid ${existing.gid}`, RECIPE_HINT);
    }
    if (db.gidTaken(g.gid)) throw new CairnError(`${recipe.file}: group ${g.name}: gid ${g.gid} is already used in the image`, RECIPE_HINT);
    db.groups.set(g.name, { name: g.name, gid: g.gid, members: [], hash: '!' });
  }
  for (const u of recipe.users) {
    if (db.users.has(u.name))
      throw new CairnError(`${recipe.file}: user ${u.name} already exists in the image (uid ${db.users.get(u.name)!.uid})`, RECIPE_HINT);
    if (db.uidTaken(u.uid)) throw new CairnError(`${recipe.file}: user ${u.name}: uid ${u.uid} is already used in the image`, RECIPE_HINT);
    let primary = db.groups.get(u.group);
    if (primary === undefined) {
      if (u.group !== u.name) throw new CairnError(`${recipe.file}: user ${u.name}: primary group ${u.group} does not exist`, 'declare it under groups');
      if (db.gidTaken(u.uid))
        throw new CairnError(
          `${recipe.file}: user ${u.name}: its own group would get gid ${u.uid}, which is already used`,
          'declare the group under groups with a free gid',
        );
      primary = { name: u.name, gid: u.uid, members: [], hash: '!' };
      db.groups.set(u.name, primary);
    }
    db.users.set(u.name, { name: u.name, uid: u.uid, gid: primary.gid, gecos: u.gecos, home: u.home, shell: u.shell, hash: u.password ?? '!' });
    for (const extra of u.groups) {
      if (!db.groups.has(extra))
        throw new CairnError(
          `${recipe.file}: user ${u.name}: group ${extra} does not exist in the image`,
          'declare it under groups, or install the package that creates it',
        );
      db.addMember(extra, u.name);
    }
  }
}

export interface AccountFiles {
  passwd: string;
  group: string;
  shadow: string;
  gshadow: string;
}

function byId<T extends { name: string }>(items: Iterable<T>, id: (item: T) => number): T[] {
  return [...items].sort((a, b) => id(a) - id(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The four files; `lastChange` (days since the epoch) stands for the build date in shadow. */
export function renderAccounts(db: AccountDb, lastChange: number): AccountFiles {
  const users = byId(db.users.values(), (u) => u.uid);
  const groups = byId(db.groups.values(), (g) => g.gid);
  const lines = (rows: string[]) => rows.map((r) => `${r}\n`).join('');
  return {
    passwd: lines(users.map((u) => [u.name, 'x', u.uid, u.gid, u.gecos, u.home, u.shell].join(':'))),
    shadow: lines(users.map((u) => `${u.name}:${u.hash}:${lastChange}:0:99999:7:::`)),
    group: lines(groups.map((g) => [g.name, 'x', g.gid, g.members.join(',')].join(':'))),
    gshadow: lines(groups.map((g) => `${g.name}:${g.hash}::${g.members.join(',')}`)),
  };
}

/** A host's own account files, for changing them (provisioning) and writing them back with renderAccounts. */
export function parseAccountFiles(files: AccountFiles, origin: string): AccountDb {
  const db = new AccountDb();
  const rows = (text: string, fields: number, name: string) => masterLines(text, fields, `${origin}/${name}`);
  const hashes = new Map(rows(files.shadow, 9, 'shadow').map(([name, hash]) => [name!, hash!]));
  const groupHashes = new Map(rows(files.gshadow, 4, 'gshadow').map(([name, hash]) => [name!, hash!]));
  for (const [name, , gid, members] of rows(files.group, 4, 'group')) {
    db.groups.set(name!, {
      name: name!,
      gid: parseId(gid!, `${origin}/group`),
      members: members === '' ? [] : members!.split(','),
      hash: groupHashes.get(name!) ?? '!',
    });
  }
  for (const [name, , uid, gid, gecos, home, shell] of rows(files.passwd, 7, 'passwd')) {
    db.users.set(name!, {
      name: name!,
      uid: parseId(uid!, `${origin}/passwd`),
      gid: parseId(gid!, `${origin}/passwd`),
      gecos: gecos!,
      home: home!,
      shell: shell!,
      hash: hashes.get(name!) ?? '!',
    });
  }
  return db;
}
