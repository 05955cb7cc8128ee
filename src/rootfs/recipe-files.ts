// The recipe's own files. They are placed before accounts are computed (a recipe may add a
// sysusers.d file) and given their owners afterwards, by name, from the image's accounts.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import type { FileSpec, Recipe } from '../recipe/types.js';
import type { AccountDb } from './accounts.js';
import { type Tree, TreePathError, imagePath } from './tree.js';

// cairn writes these from other recipe keys; a file there would be silently replaced.
const GENERATED: Record<string, string> = {
  'etc/passwd': 'users',
  'etc/group': 'groups',
  'etc/shadow': 'users',
  'etc/gshadow': 'groups',
  'etc/hostname': 'hostname',
  'etc/machine-id': 'nothing (it is generated on first boot)',
  'etc/os-release': 'name and version',
  'usr/lib/os-release': 'name and version',
};

function where(recipe: Pick<Recipe, 'file'>, index: number, spec: FileSpec): string {
  return `${recipe.file}: files[${index}] (${spec.path})`;
}

async function contentOf(spec: FileSpec, label: string): Promise<AsyncIterable<Buffer> | Buffer[]> {
  if (spec.source === null) return [Buffer.from(spec.content ?? '', 'utf8')];
  const info = await stat(spec.source).catch((err: NodeJS.ErrnoException) => {
    throw new CairnError(`${label}: cannot read source ${spec.source}: ${err.message}`, "the source path is relative to the recipe's folder");
  });
  if (!info.isFile()) throw new CairnError(`${label}: source ${spec.source} is not a regular file`);
  return createReadStream(spec.source) as AsyncIterable<Buffer>;
}

export async function placeRecipeFiles(tree: Tree, recipe: Pick<Recipe, 'files' | 'file'>): Promise<void> {
  for (const [index, spec] of recipe.files.entries()) {
    const label = where(recipe, index, spec);
    try {
      const rel = imagePath(spec.path);
      if (rel in GENERATED) throw new CairnError(`${label}: cairn generates this file`, `set ${GENERATED[rel]} in the recipe instead`);
      await tree.writeFile(rel, await contentOf(spec, label), spec.mode, { uid: 0, gid: 0 });
    } catch (err) {
      if (err instanceof TreePathError) throw new CairnError(`${label}: ${err.message}`, 'files go to plain paths inside the image');
      if (err instanceof CairnError) throw err;
      throw new CairnError(`${label}: ${(err as Error).message}`);
    }
  }
}

export function ownRecipeFiles(tree: Tree, recipe: Pick<Recipe, 'files' | 'file'>, db: AccountDb): void {
  for (const [index, spec] of recipe.files.entries()) {
    const label = where(recipe, index, spec);
    const user = db.users.get(spec.owner);
    if (user === undefined)
      throw new CairnError(`${label}: owner ${spec.owner} is not a user of the image`, 'declare it under users, or install the package that creates it');
    const group = db.groups.get(spec.group);
    if (group === undefined)
      throw new CairnError(`${label}: group ${spec.group} is not a group of the image`, 'declare it under groups, or install the package that creates it');
    tree.chown(imagePath(spec.path), { uid: user.uid, gid: group.gid }, spec.mode);
  }
}
