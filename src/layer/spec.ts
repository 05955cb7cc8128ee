// LAYER.yaml: what an app layer holds and which base it is built for, validated like a recipe
// (schema, then what the schema cannot say) with every problem at file:line:column.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { shipped } from '../install.js';
import { hostFile, shown } from '../recipe/checks.js';
import type { Problem, RecipeIssue } from '../document/issues.js';
import recipeSchema from '../recipe/recipe.schema.json' with { type: 'json' };
import { compileSchema } from '../document/schema.js';
import { SourceFileError, validateYamlText } from '../document/validate-yaml.js';
import schema from './layer.schema.json' with { type: 'json' };

export interface LayerSpec {
  /** Absolute path of the layer file. */
  file: string;
  name: string;
  version: string;
  description: string;
  /** Absolute host path of the base (recipe, build folder, tree or lockfile), or null when the file names none. */
  base: string | null;
  /** Absolute path of the keyring for a base that is not a recipe, or null for the shipped one. */
  keyring: string | null;
  packages: string[];
  /** mkfs.erofs compressor, or null for none. */
  compression: string | null;
}

interface Written {
  name: string;
  version: string;
  description: string;
  base?: string;
  keyring?: string;
  packages: string[];
  compression: string | null;
}

export class LayerSpecError extends SourceFileError {
  constructor(file: string, issues: RecipeIssue[]) {
    super(file, issues, `every setting is described in ${shipped('src/layer/layer.schema.json')}`);
    this.name = 'LayerSpecError';
  }
}

let compiled: ValidateFunction | undefined;

function checkLayer(data: unknown, dir: string): Problem[] {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return [];
  const { base, keyring } = data as Record<string, unknown>;
  const problems = hostFile(keyring, ['keyring'], dir);
  if (typeof base === 'string' && base !== '' && statSync(resolve(dir, base), { throwIfNoEntry: false }) === undefined) {
    problems.push({ path: ['base'], anchor: { kind: 'value' }, message: `${shown(resolve(dir, base))} does not exist` });
  }
  return problems;
}

/** Validates layer text as if read from `file`; returns the spec, or every issue sorted by position. */
export function validateLayerText(text: string, file: string): { spec?: LayerSpec; errors: RecipeIssue[] } {
  compiled ??= compileSchema(schema, [recipeSchema]);
  const dir = dirname(resolve(file));
  const { data, errors } = validateYamlText(text, file, {
    validate: compiled,
    emptyMessage: 'the layer file is empty; expected a mapping with at least name, version and packages',
    check: (value) => checkLayer(value, dir),
  });
  if (data === undefined) return { errors };
  const w = data as Written;
  const spec: LayerSpec = {
    file: resolve(file),
    name: w.name,
    version: w.version,
    description: w.description,
    base: w.base === undefined ? null : resolve(dir, w.base),
    keyring: w.keyring === undefined ? null : resolve(dir, w.keyring),
    packages: w.packages,
    compression: w.compression === 'none' ? null : w.compression,
  };
  return { spec, errors };
}

export async function loadLayerSpec(file: string): Promise<LayerSpec> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new CairnError(
      `cannot read layer file ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`,
      'name a LAYER.yaml with name, version, base and packages',
    );
  });
  const { spec, errors } = validateLayerText(text, file);
  if (!spec) throw new LayerSpecError(file, errors);
  return spec;
}
