// Enables and masks systemd units the way `systemctl enable` / `mask` do, without systemd: the
// unit's [Install] section becomes symlinks under /etc/systemd/system (wants/requires/upholds
// directories, aliases), and Also= units are enabled with it.
import { readFileSync } from 'node:fs';
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };
const ETC_UNITS = 'etc/systemd/system';
// Where systemctl looks, most specific first.
const UNIT_DIRS = [ETC_UNITS, 'usr/lib/systemd/system'];
const UNIT_NAME = /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$/;

export interface InstallSection {
  wantedBy: string[];
  requiredBy: string[];
  upheldBy: string[];
  alias: string[];
  also: string[];
  defaultInstance: string | null;
}

const LIST_KEYS: Record<string, keyof Omit<InstallSection, 'defaultInstance'>> = {
  WantedBy: 'wantedBy',
  RequiredBy: 'requiredBy',
  UpheldBy: 'upheldBy',
  Alias: 'alias',
  Also: 'also',
};

/** The [Install] section of a unit file (comments, continuations and resets handled). */
export function parseInstallSection(text: string): InstallSection {
  const install: InstallSection = { wantedBy: [], requiredBy: [], upheldBy: [], alias: [], also: [], defaultInstance: null };
  let section = '';
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('[')) {
      section = line.replace(/^\[|\]$/g, '');
      continue;
    }
    if (section !== 'Install') continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (key === 'DefaultInstance') install.defaultInstance = value === '' ? null : value;
    const list = LIST_KEYS[key];
    if (list === undefined) continue;
    // An empty assignment resets the list, as in every systemd list setting.
    if (value === '') install[list] = [];
    else install[list].push(...value.split(/\s+/));
  }
  return install;
}

interface FoundUnit {
  /** Image path of the unit file, the target of the links systemctl makes. */
  path: string;
  text: string;
}

function findUnit(tree: Tree, name: string): FoundUnit | null {
  for (const dir of UNIT_DIRS) {
    const rel = `${dir}/${name}`;
    if (tree.lstat(rel) === undefined) continue;
    const host = tree.resolve(rel);
    if (host === null) continue;
    const text = readFileSync(host, 'utf8');
    return { path: `/${rel}`, text };
  }
  return null;
}

function isMasked(tree: Tree, name: string): boolean {
  const st = tree.lstat(`${ETC_UNITS}/${name}`);
  return st !== undefined && st.isSymbolicLink() && tree.resolve(`${ETC_UNITS}/${name}`) === null;
}

function splitName(name: string): { prefix: string; instance: string | null; suffix: string } {
  const dot = name.lastIndexOf('.');
  const base = name.slice(0, dot);
  const at = base.indexOf('@');
  return at < 0
    ? { prefix: base, instance: null, suffix: name.slice(dot) }
    : { prefix: base.slice(0, at), instance: base.slice(at + 1), suffix: name.slice(dot) };
}

/** Replaces the few specifiers [Install] sections use (%i, %p, %n, %%); others are refused. */
function expand(value: string, linkName: string, where: string): string {
  const { prefix, instance } = splitName(linkName);
  return value.replace(/%(.)/g, (_, c: string) => {
    switch (c) {
      case 'i':
        return instance ?? '';
      case 'p':
        return prefix;
      case 'n':
        return linkName;
      case '%':
        return '%';
      default:
        throw new CairnError(
          `${where}: the specifier %${c} is not supported when enabling units at build time`,
          'enable a unit whose [Install] section does not use it',
        );
    }
  });
}

function checkName(name: string, where: string): void {
  if (!UNIT_NAME.test(name))
    throw new CairnError(`${where}: "${name}" is not a valid unit name`, 'unit names look like name.service, name@instance.service, name.timer');
}

class UnitEnabler {
  readonly links: string[] = [];
  private done = new Set<string>();

  constructor(
    private tree: Tree,
    private origin: string,
  ) {}

  private link(rel: string, target: string): void {
    this.tree.symlink(rel, target, ROOT);
    this.links.push(`/${rel} -> ${target}`);
  }

  enable(name: string, requestedBy: string): void {
    const where = `${this.origin}: ${requestedBy}`;
    checkName(name, where);
    if (this.done.has(name)) return;
    this.done.add(name);
    const { prefix, instance, suffix } = splitName(name);
    const template = instance === null ? null : `${prefix}@${suffix}`;
    const found = findUnit(this.tree, name) ?? (template === null ? null : findUnit(this.tree, template));
    if (found === null) {
      throw new CairnError(
        `${where}: unit ${name} is not in the image (looked in /${UNIT_DIRS.join(', /')})`,
        'install the package that ships it, add it under files, or correct the name',
      );
    }
    if (isMasked(this.tree, name)) throw new CairnError(`${where}: unit ${name} is masked`, 'remove it from units.mask');
    const install = parseInstallSection(found.text);
    let linkName = name;
    if (instance === '') {
      if (install.defaultInstance === null) {
        throw new CairnError(`${where}: ${name} is a template without DefaultInstance=`, `enable an instance, like ${prefix}@NAME${suffix}`);
      }
      linkName = `${prefix}@${install.defaultInstance}${suffix}`;
      checkName(linkName, where);
    }
    const { wantedBy, requiredBy, upheldBy, alias, also } = install;
    if ([wantedBy, requiredBy, upheldBy, alias, also].every((l) => l.length === 0)) {
      throw new CairnError(
        `${where}: ${name} has no [Install] section, so it cannot be enabled (it is started by other units)`,
        `remove it from units.enable, or enable a unit that pulls it in`,
      );
    }
    const unitWhere = `${where}: [Install] of ${found.path}`;
    const dirs: [string[], string][] = [
      [wantedBy, 'wants'],
      [requiredBy, 'requires'],
      [upheldBy, 'upholds'],
    ];
    for (const [targets, kind] of dirs) {
      for (const raw of targets) {
        const target = expand(raw, linkName, unitWhere);
        checkName(target, unitWhere);
        this.link(`${ETC_UNITS}/${target}.${kind}/${linkName}`, found.path);
      }
    }
    for (const raw of alias) {
      const aliasName = expand(raw, linkName, unitWhere);
      checkName(aliasName, unitWhere);
      this.link(`${ETC_UNITS}/${aliasName}`, found.path);
    }
    for (const raw of also) this.enable(expand(raw, linkName, unitWhere), `Also= of ${name}`);
  }

  mask(name: string): void {
    const where = `${this.origin}: units.mask`;
    checkName(name, where);
    if (this.done.has(name)) throw new CairnError(`${where}: ${name} is both enabled and masked`, 'keep it in one of units.enable and units.mask');
    const existing = this.tree.lstat(`${ETC_UNITS}/${name}`);
    if (existing !== undefined && !existing.isSymbolicLink()) {
      throw new CairnError(`${where}: /${ETC_UNITS}/${name} is a unit file, masking it would replace it`, 'remove the file from the recipe, or do not mask it');
    }
    this.link(`${ETC_UNITS}/${name}`, '/dev/null');
  }
}

/** Enables then masks the recipe's units; returns the links made, as "/link -> target". */
export function applyUnits(tree: Tree, recipe: Pick<Recipe, 'units' | 'file'>): string[] {
  const enabler = new UnitEnabler(tree, recipe.file);
  for (const name of recipe.units.enable) enabler.enable(name, 'units.enable');
  for (const name of recipe.units.mask) enabler.mask(name);
  return enabler.links;
}
