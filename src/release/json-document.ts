// Release metadata arrives as JSON from files and the network; each kind has a JSON Schema in
// this folder, and nothing reaches the code that trusts its numbers before passing it.
import { Ajv, type ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';

const ajv = new Ajv({ allErrors: false });

export function compileSchema<T>(schema: object): ValidateFunction<T> {
  return ajv.compile<T>(schema);
}

/** Parses and validates `text`; `what` names the kind of document in errors ("a cairn manifest"). */
export function parseJsonDocument<T>(text: string, where: string, validate: ValidateFunction<T>, what: string, maxBytes: number): T {
  if (text.length > maxBytes) throw new CairnError(`${where}: ${text.length} bytes is too big for ${what} (at most ${maxBytes})`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new CairnError(`${where}: not JSON (${(err as Error).message})`);
  }
  if (!validate(data)) {
    const e = validate.errors?.[0];
    throw new CairnError(`${where}: not ${what}: ${e?.instancePath || '(top level)'} ${e?.message ?? ''}`.trim());
  }
  return data;
}

export function formatJson(data: unknown): string {
  return JSON.stringify(data, null, 2) + '\n';
}
