// Builds the image's account files from the tree (base-passwd masters, sysusers.d) and the recipe.
import { readdirSync, readFileSync } from 'node:fs';
import type { Recipe } from '../recipe/types.js';
import { AccountDb, applyRecipeAccounts, minimalAccounts, parseMasters, renderAccounts } from './accounts.js';
import { applySysusers, emptySysusers, parseSysusers } from './sysusers.js';
import type { Tree } from './tree.js';

const MASTERS = 'usr/share/base-passwd';
// systemd reads both; a file in /etc replaces the one of the same name in /usr/lib.
const SYSUSERS_DIRS = ['usr/lib/sysusers.d', 'etc/sysusers.d'];

function readTreeFile(tree: Tree, rel: string): string | null {
  const path = tree.resolve(rel);
  return path === null ? null : readFileSync(path, 'utf8');
}

function sysusersFiles(tree: Tree): Map<string, string> {
  const byName = new Map<string, string>();
  for (const dir of SYSUSERS_DIRS) {
    const path = tree.resolve(dir);
    if (path === null) continue;
    for (const name of readdirSync(path)) if (name.endsWith('.conf')) byName.set(name, `${dir}/${name}`);
  }
  return new Map([...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Writes /etc/passwd, group, shadow and gshadow; returns the database for resolving owners. */
export async function configureAccounts(tree: Tree, recipe: Pick<Recipe, 'users' | 'groups' | 'file'>, sourceDateEpoch: number): Promise<AccountDb> {
  const passwd = readTreeFile(tree, `${MASTERS}/passwd.master`);
  const group = readTreeFile(tree, `${MASTERS}/group.master`);
  const db = passwd !== null && group !== null ? parseMasters(passwd, group, `/${MASTERS}`) : minimalAccounts();
  const config = emptySysusers();
  for (const [, rel] of sysusersFiles(tree)) {
    const text = readTreeFile(tree, rel);
    if (text !== null) parseSysusers(text, `/${rel}`, config);
  }
  applySysusers(db, config);
  applyRecipeAccounts(db, recipe);
  const files = renderAccounts(db, Math.floor(sourceDateEpoch / 86400));
  const shadowGid = db.groups.get('shadow')?.gid;
  const root = { uid: 0, gid: 0 };
  // Secrets readable by root and the shadow group (as Debian has them), or by root alone.
  const secret = shadowGid === undefined ? { mode: 0o000, owner: root } : { mode: 0o640, owner: { uid: 0, gid: shadowGid } };
  await tree.writeFile('etc/passwd', [Buffer.from(files.passwd)], 0o644, root);
  await tree.writeFile('etc/group', [Buffer.from(files.group)], 0o644, root);
  await tree.writeFile('etc/shadow', [Buffer.from(files.shadow)], secret.mode, secret.owner);
  await tree.writeFile('etc/gshadow', [Buffer.from(files.gshadow)], secret.mode, secret.owner);
  return db;
}
