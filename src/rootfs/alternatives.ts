// What update-alternatives would have set up for the recipe's choices: LINK -> /etc/alternatives/NAME
// -> PATH, with PATH required to exist in the image so a typo fails the build, not the host.
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import { type Tree, imagePath } from './tree.js';

const ROOT = { uid: 0, gid: 0 };

export function applyAlternatives(tree: Tree, recipe: Pick<Recipe, 'alternatives' | 'file'>): void {
  for (const alt of recipe.alternatives) {
    const where = `${recipe.file}: alternative ${alt.name}`;
    if (alt.name === '.' || alt.name === '..') throw new CairnError(`${where}: invalid name`, 'name it like the generic command (editor, awk)');
    if (tree.resolve(imagePath(alt.path)) === null) {
      throw new CairnError(`${where}: ${alt.path} does not exist in the image`, 'install the package that ships it, or correct path');
    }
    const link = imagePath(alt.link);
    const existing = tree.lstat(link);
    if (existing !== undefined && !existing.isSymbolicLink()) {
      throw new CairnError(
        `${where}: ${alt.link} is already a ${existing.isDirectory() ? 'directory' : 'file'} shipped by a package`,
        'choose another link path',
      );
    }
    tree.symlink(`etc/alternatives/${alt.name}`, alt.path, ROOT);
    tree.symlink(link, `/etc/alternatives/${alt.name}`, ROOT);
  }
}
