// Validation of a YAML settings file (a recipe, a layer) against a JSON schema, with every
// problem placed at file:line:column. The schema says what one value may be; `check` adds what
// it cannot (relations between entries, host files); `convert` turns valid data into the type
// the caller reads.
import { Ajv, type AnySchema, type ValidateFunction } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { CairnError } from '../errors.js';
import { formatIssue, type Problem, type RecipeIssue, formatPath } from './issues.js';
import { translateSchemaErrors } from './schema-errors.js';
import { YamlLocator } from './yaml-locate.js';

export interface YamlDocumentRules<T> {
  validate: ValidateFunction;
  /** The issue reported for an empty file (what it must hold at least). */
  emptyMessage: string;
  check?: (data: unknown, locator: YamlLocator) => Problem[];
  convert: (data: unknown) => T;
}

/** A file that does not validate; the message lists every issue, one per line. */
export class YamlFileError extends CairnError {
  constructor(
    readonly file: string,
    readonly issues: RecipeIssue[],
    hint: string,
  ) {
    super(`${file} has ${issues.length} ${issues.length === 1 ? 'problem' : 'problems'}:\n${issues.map(formatIssue).join('\n')}`, hint);
    this.name = 'YamlFileError';
  }
}

/**
 * Compiles a schema the way every cairn settings file is validated: all errors at once, the
 * schema's defaults filled in (so they live in one place), and the `expected` words each node
 * may carry for messages.
 */
export function compileSettingsSchema(schema: AnySchema, referenced: AnySchema[] = []): ValidateFunction {
  const ajv = new Ajv({ allErrors: true, verbose: true, useDefaults: true, allowUnionTypes: true });
  ajv.addVocabulary(['expected']);
  // Schemas whose definitions this one $refs by their $id (a layer's package names are a recipe's).
  for (const other of referenced) ajv.addSchema(other);
  return ajv.compile(schema);
}

/** Validates YAML text read from `file`; returns the converted value, or every issue sorted by position. */
export function validateYamlText<T>(text: string, file: string, rules: YamlDocumentRules<T>): { value?: T; errors: RecipeIssue[] } {
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
    return { errors: [{ file, line: 1, column: 1, path: '', message: rules.emptyMessage }] };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { errors: [{ file, line: 1, column: 1, path: '', message: `invalid YAML: ${(err as Error).message}` }] };
  }
  const locator = new YamlLocator(doc, lines);
  const problems: Problem[] = rules.validate(data) ? [] : translateSchemaErrors(rules.validate.errors ?? [], data, (path) => locator.written(path));
  problems.push(...(rules.check?.(data, locator) ?? []));
  const errors = sortIssues(
    problems.map((p): RecipeIssue => ({ file, ...locator.position(p.path, p.anchor), path: formatPath(p.path), message: p.message })),
  );
  return errors.length > 0 ? { errors } : { value: rules.convert(data), errors };
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
