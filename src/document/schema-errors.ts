import type { ErrorObject } from 'ajv';
import { describeValue, formatPath, type Problem } from './issues.js';
import { closest } from './suggest.js';
import type { DataPath } from './yaml-locate.js';

/** A schema node may say in words what it accepts; messages use that instead of ajv's jargon. */
interface Described {
  expected?: string;
  properties?: Record<string, unknown>;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  null: 'an empty value',
};

/** The recipe text of the scalar at a path, when there is one. */
export type WrittenText = (path: DataPath) => string | undefined;

/** Turns ajv's errors (run with allErrors and verbose) into messages a person can act on. */
export function translateSchemaErrors(errors: readonly ErrorObject[], data: unknown, written: WrittenText): Problem[] {
  const problems: Problem[] = [];
  for (const error of errors) {
    const path = dataPath(error.instancePath, data);
    const problem = translate(error, path, describeValue(error.data, written(path)));
    if (problem) problems.push(problem);
  }
  return problems;
}

function translate(error: ErrorObject, path: DataPath, got: string): Problem | undefined {
  const schema = (error.parentSchema ?? {}) as Described;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(error.params.additionalProperty);
      const allowed = Object.keys(schema.properties ?? {});
      const guess = closest(key, allowed);
      const hint = guess ? `did you mean "${guess}"?` : `expected one of ${allowed.join(', ')}`;
      return { path, anchor: { kind: 'key', key }, message: `unknown key "${key}"; ${hint}` };
    }
    case 'required':
      return { path, anchor: { kind: 'map' }, message: `missing required key "${String(error.params.missingProperty)}"` };
    case 'propertyNames':
      // ajv reports the offending name through the nested keyword, which names the key.
      return undefined;
    case 'if':
      // The failing `then` reports itself (a missing key, say); "must match then" adds nothing.
      return undefined;
    case 'uniqueItems': {
      // ajv reports the later copy as i and the earlier as j.
      const { i, j } = error.params as { i: number; j: number };
      const value = Array.isArray(error.data) ? describeValue(error.data[i]) : 'an item';
      return {
        path: [...path, i],
        anchor: { kind: 'value' },
        message: `${value} is listed twice (also at ${formatPath([...path, j])})`,
      };
    }
  }
  if (error.propertyName !== undefined) {
    const key = error.propertyName;
    return {
      path,
      anchor: { kind: 'key', key },
      message: `expected ${schema.expected ?? 'a different key'}, got ${JSON.stringify(key)}`,
    };
  }
  if (schema.expected) return { path, anchor: { kind: 'value' }, message: `expected ${schema.expected}, got ${got}` };
  if (error.keyword === 'enum') {
    const allowed = (error.params.allowedValues as unknown[]).map(String).join(', ');
    return { path, anchor: { kind: 'value' }, message: `expected one of ${allowed}, got ${got}` };
  }
  if (error.keyword === 'type') {
    const types = ([] as string[]).concat(error.params.type as string | string[]);
    return { path, anchor: { kind: 'value' }, message: `expected ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')}, got ${got}` };
  }
  return { path, anchor: { kind: 'value' }, message: `${error.message ?? 'is not valid'}, got ${got}` };
}

/** The data path of an ajv JSON pointer; list indexes become numbers so paths print as [2]. */
function dataPath(pointer: string, data: unknown): DataPath {
  const path: (string | number)[] = [];
  let current: unknown = data;
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(current)) {
      path.push(Number(segment));
      current = current[Number(segment)];
    } else {
      path.push(segment);
      current = current !== null && typeof current === 'object' ? (current as Record<string, unknown>)[segment] : undefined;
    }
  }
  return path;
}
