import type { CommandModule } from 'yargs';
import { readRecipeText, RecipeError, validateRecipeText } from '../recipe/load.js';
import { OPTIONS, output } from './options.js';

interface Args {
  recipe: string;
  json: boolean;
}

async function validateHandler({ recipe: file, json }: Args): Promise<void> {
  const { recipe, errors } = validateRecipeText(await readRecipeText(file), file);
  if (json) {
    output(json, { ok: errors.length === 0, errors }, () => '');
    if (errors.length > 0) process.exitCode = 1;
    return;
  }
  if (!recipe) throw new RecipeError(file, errors);
  const count = recipe.packages.length;
  process.stdout.write(`${file}: ok (${recipe.name} ${recipe.version}, ${count} ${count === 1 ? 'package' : 'packages'})\n`);
}

const command: CommandModule<object, Args> = {
  command: 'validate <recipe>',
  describe: 'Check a recipe and list every problem with its line and column',
  builder: (yargs) =>
    yargs.positional('recipe', OPTIONS.recipe).option('json', { ...OPTIONS.json, describe: 'Print {ok, errors: [{file, line, column, path, message}]}' }),
  handler: validateHandler,
};

export default command;
