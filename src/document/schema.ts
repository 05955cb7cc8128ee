// The one way cairn compiles a JSON Schema, for every document it reads: recipes, layer files,
// the agent's configuration and state, lockfiles, manifests and release metadata.
import { Ajv, type ValidateFunction } from 'ajv';

/**
 * A validator for `schema`. Defaults the schema declares are filled in (so they live in one place),
 * every error is collected (a user fixing a file wants all of them at once), and schema nodes may
 * carry an `expected` text that error messages use instead of ajv's jargon. `referenced` are
 * schemas whose definitions this one $refs by their $id (a layer's package names are a recipe's).
 */
export function compileSchema<T = unknown>(schema: object, referenced: object[] = []): ValidateFunction<T> {
  const ajv = new Ajv({ allErrors: true, verbose: true, useDefaults: true, allowUnionTypes: true });
  ajv.addVocabulary(['expected']);
  for (const other of referenced) ajv.addSchema(other);
  return ajv.compile<T>(schema);
}
