import { statSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { isScalar } from 'yaml';
import { shipped, DEFAULT_KERNEL_CONFIG, DEFAULT_KEYRING } from '../install.js';
import { describeValue, formatPath, type Problem } from '../document/issues.js';
import { parseSize, SIZE_FORM } from '../document/units.js';
import type { DataPath, YamlLocator } from '../document/yaml-locate.js';

type Entry = Record<string, unknown>;

/**
 * What the schema cannot say: relations between entries (duplicates, a user's group, both
 * content and source), host files that must exist, and how YAML spelled a mode. Runs on data
 * that may have failed the schema, so it looks only at the parts that have the right shape.
 */
export function checkRecipe(data: unknown, recipeDir: string, yaml: YamlLocator): Problem[] {
  if (!isEntry(data)) return [];
  return [
    ...checkHostFiles(data, recipeDir),
    ...checkFiles(data, yaml),
    ...checkAccounts(data),
    ...checkUnits(data),
    ...checkPackageSuites(data),
    ...unique(entries(data, 'alternatives'), ['alternatives'], 'name', 'alternative'),
    ...unique(entries(data, 'alternatives'), ['alternatives'], 'link', 'link'),
    ...unique(entries(data, 'containers'), ['containers'], 'name', 'container name'),
    ...checkSizes(data),
  ];
}

/** NAME/SUITE needs SUITE in base.extra-suites, and a package is named once, with or without a suite. */
function checkPackageSuites(data: Entry): Problem[] {
  const packages: unknown[] | undefined = Array.isArray(data.packages) ? data.packages : undefined;
  if (!packages) return [];
  const base = isEntry(data.base) ? data.base : {};
  const extra = Array.isArray(base['extra-suites']) ? base['extra-suites'] : [];
  const problems: Problem[] = [];
  const seen = new Map<string, number>();
  packages.forEach((request, i) => {
    if (typeof request !== 'string') return;
    const [name, suite] = request.split('/');
    if (suite !== undefined && !extra.includes(suite)) {
      problems.push({
        path: ['packages', i],
        anchor: { kind: 'value' },
        message: `${describeValue(request)} names the suite ${describeValue(suite)}, which base.extra-suites does not list`,
      });
    }
    const earlier = seen.get(name!);
    if (earlier !== undefined && packages[earlier] !== request) {
      problems.push({
        path: ['packages', i],
        anchor: { kind: 'value' },
        message: `${describeValue(name)} is already requested by ${formatPath(['packages', earlier])}`,
      });
    }
    if (earlier === undefined) seen.set(name!, i);
  });
  return problems;
}

function checkHostFiles(data: Entry, recipeDir: string): Problem[] {
  const problems: Problem[] = [];
  const base = isEntry(data.base) ? data.base : undefined;
  const kernel = isEntry(data.kernel) ? data.kernel : undefined;
  if (base) problems.push(...hostFile(base.keyring, ['base', 'keyring'], recipeDir, DEFAULT_KEYRING));
  if (kernel) problems.push(...hostFile(kernel.config, ['kernel', 'config'], recipeDir, DEFAULT_KERNEL_CONFIG));
  for (const [i, file] of entries(data, 'files')) {
    problems.push(...hostFile(file.source, ['files', i, 'source'], recipeDir));
  }
  if (isEntry(data.update) && Array.isArray(data.update.keys)) {
    data.update.keys.forEach((key, i) => problems.push(...hostFile(key, ['update', 'keys', i], recipeDir)));
  }
  return problems;
}

/**
 * A host file the YAML names (relative to `baseDir`), or the default shipped with cairn, must be a
 * readable regular file.
 */
export function hostFile(value: unknown, path: DataPath, baseDir: string, fallback?: string): Problem[] {
  if (value === undefined && fallback) {
    const file = shipped(fallback);
    const problem = fileProblem(file);
    const key = String(path[path.length - 1]);
    return problem
      ? [{ path: path.slice(0, -1), anchor: { kind: 'map' }, message: `the default ${key} ${shown(file)} ${problem}; set ${formatPath(path)}` }]
      : [];
  }
  if (typeof value !== 'string' || value === '') return [];
  const file = resolve(baseDir, value);
  const problem = fileProblem(file);
  return problem ? [{ path, anchor: { kind: 'value' }, message: `${shown(file)} ${problem}` }] : [];
}

/** A host path as the user would type it from here: relative below the working directory. */
export function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

function fileProblem(file: string): string | undefined {
  try {
    const stat = statSync(file);
    return stat.isFile() ? undefined : 'is not a regular file';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `cannot be read (${code})`;
  }
}

function checkFiles(data: Entry, yaml: YamlLocator): Problem[] {
  const problems: Problem[] = [];
  for (const [i, file] of entries(data, 'files')) {
    if ('content' in file && 'source' in file) {
      problems.push({ path: ['files', i], anchor: { kind: 'key', key: 'source' }, message: 'has both content and source; keep one' });
    } else if (!('content' in file) && !('source' in file)) {
      problems.push({ path: ['files', i], anchor: { kind: 'map' }, message: 'needs content (inline text) or source (a file beside the recipe)' });
    }
    // YAML 1.2 reads an unquoted 0644 as the decimal 644; only 0o644 means octal.
    const mode = yaml.node(['files', i, 'mode']);
    if (typeof file.mode === 'number' && isScalar(mode) && mode.format !== 'OCT') {
      problems.push({
        path: ['files', i, 'mode'],
        anchor: { kind: 'value' },
        message: `expected an octal mode as a quoted string (like "0644") or 0o644, got ${describeValue(file.mode, mode.source)} (YAML reads it as the decimal ${file.mode})`,
      });
    }
  }
  problems.push(...unique(entries(data, 'files'), ['files'], 'path', 'path'));
  return problems;
}

function checkAccounts(data: Entry): Problem[] {
  const groups = entries(data, 'groups');
  const users = entries(data, 'users');
  const problems = [
    ...unique(groups, ['groups'], 'name', 'group name'),
    ...unique(groups, ['groups'], 'gid', 'gid'),
    ...unique(users, ['users'], 'name', 'user name'),
    ...unique(users, ['users'], 'uid', 'uid'),
  ];
  const groupNames = new Set(groups.map(([, g]) => g.name));
  const gids = new Map(groups.map(([, g]) => [g.gid, g.name]));
  for (const [i, user] of users) {
    if (typeof user.name !== 'string') continue;
    const group = user.group ?? user.name;
    if (groupNames.has(group)) continue;
    if (group !== user.name) {
      problems.push({
        path: ['users', i, 'group'],
        anchor: { kind: 'value' },
        message: `expected a group from groups or the user's own name "${user.name}", got ${describeValue(group)}`,
      });
    } else if (gids.has(user.uid)) {
      problems.push({
        path: ['users', i, 'uid'],
        anchor: { kind: 'value' },
        message: `group "${user.name}" would be created with gid ${String(user.uid)}, which group "${String(gids.get(user.uid))}" already has; declare group "${user.name}" in groups with a free gid`,
      });
    }
  }
  return problems;
}

function checkUnits(data: Entry): Problem[] {
  if (!isEntry(data.units) || !Array.isArray(data.units.enable) || !Array.isArray(data.units.mask)) return [];
  const enabled = new Set(data.units.enable);
  return data.units.mask.flatMap((unit, i): Problem[] =>
    enabled.has(unit) ? [{ path: ['units', 'mask', i], anchor: { kind: 'value' }, message: `${describeValue(unit)} is both enabled and masked` }] : [],
  );
}

function checkSizes(data: Entry): Problem[] {
  const sized: [DataPath, unknown][] = [];
  if (isEntry(data.disk)) for (const [key, value] of Object.entries(data.disk)) if (key !== 'usr-compression') sized.push([['disk', key], value]);
  for (const [i, container] of entries(data, 'containers')) sized.push([['containers', i, 'memory'], container.memory]);
  // The schema checks the form; only sizes too large to count in bytes exactly are left.
  return sized
    .filter(([, value]) => wellFormedSize(value) && parseSize(value) === null)
    .map(([path, value]) => ({ path, anchor: { kind: 'value' }, message: `expected a size below 8PiB, got ${describeValue(value)}` }));
}

function wellFormedSize(value: unknown): boolean {
  return (typeof value === 'number' && Number.isInteger(value) && value > 0) || (typeof value === 'string' && SIZE_FORM.test(value));
}

/** Later entries whose `field` repeats an earlier one's, reported at the later entry. */
function unique(list: [number, Entry][], listPath: DataPath, field: string, what: string): Problem[] {
  const first = new Map<unknown, number>();
  const problems: Problem[] = [];
  for (const [i, entry] of list) {
    const value = entry[field];
    if (typeof value !== 'string' && typeof value !== 'number') continue;
    const earlier = first.get(value);
    if (earlier === undefined) {
      first.set(value, i);
    } else {
      problems.push({
        path: [...listPath, i, field],
        anchor: { kind: 'value' },
        message: `${what} ${describeValue(value)} is already used by ${formatPath([...listPath, earlier])}`,
      });
    }
  }
  return problems;
}

/** The well-shaped entries of a list of mappings, with their indexes. */
function entries(data: Entry, key: string): [number, Entry][] {
  const list = data[key];
  if (!Array.isArray(list)) return [];
  return list.flatMap((item, i): [number, Entry][] => (isEntry(item) ? [[i, item]] : []));
}

function isEntry(value: unknown): value is Entry {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
