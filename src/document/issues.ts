import type { Anchor, DataPath } from './yaml-locate.js';

/** One thing wrong with a YAML file (a recipe, the agent's configuration), with where it is. */
export interface SourceIssue {
  /** The file's path as the caller gave it. */
  file: string;
  line: number;
  column: number;
  /** Key path like `users[0].uid`; empty for the document itself. */
  path: string;
  message: string;
}

export type RecipeIssue = SourceIssue;

/** An issue before it has a position in the text. */
export interface Problem {
  path: DataPath;
  anchor: Anchor;
  message: string;
}

/** `FILE:LINE:COL: path: message`, the form editors and terminals link to. */
export function formatIssue(issue: SourceIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.path ? `${issue.path}: ` : ''}${issue.message}`;
}

export function formatPath(path: DataPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) text += text ? `.${segment}` : segment;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/**
 * How a value the user wrote is shown after "got". `written` is its text in the recipe, which
 * beats the parsed number when YAML changed it (1.0 reads as 1, 0644 as 644).
 */
export function describeValue(value: unknown, written?: string): string {
  if (written !== undefined && (typeof value === 'number' || typeof value === 'boolean')) return written;
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}
