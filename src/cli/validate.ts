import type { CommandModule } from 'yargs';
import { readRecipeText, RecipeError, validateRecipeText } from '../recipe/load.js';

interface Args {
  recipe: string;
  json: boolean;
}

const command: CommandModule<object, Args> = {
  command: 'validate <recipe>',
  describe: 'Check a recipe and list every problem with its line and column',
  builder: (yargs) =>
    yargs
      .positional('recipe', { type: 'string', demandOption: true, describe: 'Recipe file, e.g. recipes/container-host.yaml' })
      .option('json', { type: 'boolean', default: false, describe: 'Print {ok, errors: [{file, line, column, path, message}]}' }),
  handler: async ({ recipe: file, json }) => {
    const { recipe, errors } = validateRecipeText(await readRecipeText(file), file);
    if (json) {
      process.stdout.write(`${JSON.stringify({ ok: errors.length === 0, errors }, null, 2)}\n`);
      if (errors.length > 0) process.exitCode = 1;
      return;
    }
    if (!recipe) throw new RecipeError(file, errors);
    const count = recipe.packages.length;
    process.stdout.write(`${file}: ok (${recipe.name} ${recipe.version}, ${count} ${count === 1 ? 'package' : 'packages'})\n`);
  },
};

export default command;
