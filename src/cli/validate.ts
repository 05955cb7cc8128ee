import type { CommandModule } from 'yargs';
import { readRecipeText, RecipeError, validateRecipeText } from '../recipe/load.js';
import { CHECK_JSON, OPTIONS, reportCheck } from './options.js';

interface Args {
  recipe: string;
  json: boolean;
}

async function validateHandler({ recipe: file, json }: Args): Promise<void> {
  const { recipe, errors } = validateRecipeText(await readRecipeText(file), file);
  reportCheck(
    json,
    { value: recipe, errors },
    (issues) => new RecipeError(file, issues),
    (r) => `${file}: ok (${r.name} ${r.version}, ${r.packages.length} ${r.packages.length === 1 ? 'package' : 'packages'})\n`,
  );
}

const command: CommandModule<object, Args> = {
  command: 'validate <recipe>',
  describe: 'Check a recipe and list every problem with its line and column',
  builder: (yargs) => yargs.positional('recipe', OPTIONS.recipe).option('json', CHECK_JSON),
  handler: validateHandler,
};

export default command;
