import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { CairnError } from '../errors.js';
import { cairnRoot } from './cairn-root.js';
import { checkRecipe } from './checks.js';
import { formatIssue, formatPath, type Problem, type RecipeIssue } from './issues.js';
import { toRecipe } from './normalize.js';
import schema from './recipe.schema.json' with { type: 'json' };
import { translateSchemaErrors } from './schema-errors.js';
import type { Recipe } from './types.js';
import { YamlLocator } from './yaml-locate.js';

export type { RecipeIssue } from './issues.js';
export { formatIssue } from './issues.js';

/** A recipe that does not validate; the message lists every issue, one per line. */
export class RecipeError extends CairnError {
  constructor(
    readonly file: string,
    readonly issues: RecipeIssue[],
  ) {
    super(
      `${file} has ${issues.length} ${issues.length === 1 ? 'problem' : 'problems'}:\n${issues.map(formatIssue).join('\n')}`,
      `every setting is described in ${join(cairnRoot(), 'src/recipe/recipe.schema.json')}`,
    );
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
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Data from a text YAML could not read is not worth validating: it would only add noise.
    const errors = doc.errors.map((e): RecipeIssue => ({
      file,
      line: e.linePos?.[0].line ?? 1,
      column: e.linePos?.[0].col ?? 1,
      path: '',
      message: `invalid YAML: ${e.message.split(' at line ')[0]!.trim()}`,
    }));
    return { errors: sortIssues(errors) };
  }
  if (doc.contents === null) {
    return { errors: [{ file, line: 1, column: 1, path: '', message: 'the recipe is empty; expected a mapping with at least name, version and kernel' }] };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { errors: [{ file, line: 1, column: 1, path: '', message: `invalid YAML: ${(err as Error).message}` }] };
  }
  const locator = new YamlLocator(doc, lines);
  const validate = schemaValidator();
  const problems: Problem[] = validate(data) ? [] : translateSchemaErrors(validate.errors ?? [], data, (path) => locator.written(path));
  problems.push(...checkRecipe(data, dirname(resolve(file)), locator));
  const errors = sortIssues(
    problems.map((p): RecipeIssue => ({ file, ...locator.position(p.path, p.anchor), path: formatPath(p.path), message: p.message })),
  );
  return errors.length > 0 ? { errors } : { recipe: toRecipe(data, file), errors };
}

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (!compiled) {
    // useDefaults fills in what the schema declares as default, so defaults live in one place.
    const ajv = new Ajv({ allErrors: true, verbose: true, useDefaults: true, allowUnionTypes: true });
    ajv.addVocabulary(['expected']);
    compiled = ajv.compile(schema);
  }
  return compiled;
}

/** By position, then message, dropping repeats (one value can fail several schema rules alike). */
function sortIssues(issues: RecipeIssue[]): RecipeIssue[] {
  const seen = new Set<string>();
  return issues
    .filter((issue) => {
      const text = formatIssue(issue);
      if (seen.has(text)) return false;
      seen.add(text);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.column - b.column || a.message.localeCompare(b.message));
}
