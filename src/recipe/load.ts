import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { shipped } from '../install.js';
import { checkRecipe } from './checks.js';
import type { RecipeIssue } from '../document/issues.js';
import { toRecipe } from './normalize.js';
import schema from './recipe.schema.json' with { type: 'json' };
import type { Recipe } from './types.js';
import { compileSchema } from '../document/schema.js';
import { SourceFileError, validateYamlText } from '../document/validate-yaml.js';

export type { RecipeIssue } from '../document/issues.js';
export { formatIssue } from '../document/issues.js';

/** A recipe that does not validate; the message lists every issue, one per line. */
export class RecipeError extends SourceFileError {
  constructor(file: string, issues: RecipeIssue[]) {
    super(file, issues, `every setting is described in ${shipped('src/recipe/recipe.schema.json')}`);
    this.name = 'RecipeError';
  }
}

/** Reads, validates and completes a recipe; throws RecipeError listing everything wrong. */
export async function loadRecipe(file: string): Promise<Recipe> {
  const { recipe, errors } = validateRecipeText(await readRecipeText(file), file);
  if (!recipe) throw new RecipeError(file, errors);
  return recipe;
}

export async function readRecipeText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CairnError(
      `cannot read recipe ${file}: ${code === 'ENOENT' ? 'no such file' : String(code ?? err)}`,
      'ready recipes are in the recipes/ folder, e.g. recipes/container-host.yaml',
    );
  }
}

/**
 * Validates recipe text as if read from `file` (which names it in errors and anchors its
 * relative paths). Returns the recipe with defaults applied, or every issue sorted by position.
 */
export function validateRecipeText(text: string, file: string): { recipe?: Recipe; errors: RecipeIssue[] } {
  const { data, errors } = validateYamlText(text, file, {
    validate: schemaValidator(),
    emptyMessage: 'the recipe is empty; expected a mapping with at least name, version and kernel',
    check: (recipe, locator) => checkRecipe(recipe, dirname(resolve(file)), locator),
  });
  return data === undefined ? { errors } : { recipe: toRecipe(data, file), errors };
}

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  compiled ??= compileSchema(schema);
  return compiled;
}
