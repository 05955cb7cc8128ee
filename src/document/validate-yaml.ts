// The machinery recipes, layer files and the agent's configuration share: parse YAML keeping source positions,
// validate against a JSON schema plus checks the schema cannot express, and report every issue
// as `file:line:col: key.path: message`.
import type { ValidateFunction } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { CairnError } from '../errors.js';
import { formatIssue, formatPath, type Problem, type SourceIssue } from './issues.js';
import { translateSchemaErrors } from './schema-errors.js';
import { YamlLocator } from './yaml-locate.js';

/** A YAML file that does not validate; the message lists every issue, one per line. */
export class SourceFileError extends CairnError {
  constructor(
    readonly file: string,
    readonly issues: SourceIssue[],
    hint: string,
  ) {
    super(`${file} has ${issues.length} ${issues.length === 1 ? 'problem' : 'problems'}:\n${issues.map(formatIssue).join('\n')}`, hint);
    this.name = 'SourceFileError';
  }
}

export interface YamlValidation {
  validate: ValidateFunction;
  /** The message for a document with nothing in it: what it should have held. */
  emptyMessage: string;
  /** What the schema cannot say; sees the data even when the schema failed, so it must check shapes. */
  check?: (data: unknown, locator: YamlLocator) => Problem[];
}

/**
 * Validates YAML text as if read from `file` (which names it in errors). Returns the data with the
 * schema's defaults applied when there is no issue, else every issue sorted by position.
 */
export function validateYamlText(text: string, file: string, options: YamlValidation): { data?: unknown; errors: SourceIssue[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Data from a text YAML could not read is not worth validating: it would only add noise.
    const errors = doc.errors.map((e): SourceIssue => ({
      file,
      line: e.linePos?.[0].line ?? 1,
      column: e.linePos?.[0].col ?? 1,
      path: '',
      message: `invalid YAML: ${e.message.split(' at line ')[0]!.trim()}`,
    }));
    return { errors: sortIssues(errors) };
  }
  if (doc.contents === null) {
    return { errors: [{ file, line: 1, column: 1, path: '', message: options.emptyMessage }] };
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { errors: [{ file, line: 1, column: 1, path: '', message: `invalid YAML: ${(err as Error).message}` }] };
  }
  const locator = new YamlLocator(doc, lines);
  const { validate } = options;
  const problems: Problem[] = validate(data) ? [] : translateSchemaErrors(validate.errors ?? [], data, (path) => locator.written(path));
  if (options.check) problems.push(...options.check(data, locator));
  const errors = sortIssues(problems.map((p): SourceIssue => ({ file, ...locator.position(p.path, p.anchor), path: formatPath(p.path), message: p.message })));
  return errors.length > 0 ? { errors } : { data, errors };
}

/** By position, then message, dropping repeats (one value can fail several schema rules alike). */
function sortIssues(issues: SourceIssue[]): SourceIssue[] {
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
