// The recipe's symbolic links (what a maintainer script would have linked, such as
// /etc/resolv.conf to systemd-resolved's stub file). A link may replace a file a package
// shipped, never a directory.
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import { imagePath, type Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };

export function applyLinks(tree: Tree, recipe: Pick<Recipe, 'links' | 'file'>): void {
  for (const link of recipe.links) {
    const rel = imagePath(link.path);
    if (tree.lstat(rel)?.isDirectory()) throw new CairnError(`${recipe.file}: link ${link.path}: a package ships a directory there`, 'choose another path');
    tree.remove(rel);
    tree.symlink(rel, link.target, ROOT);
  }
}
