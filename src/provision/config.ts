// Ignition configs (spec 3.0.0 to 3.5.0, as Butane writes them) for a cairn host's first boot:
// validated with the project's schema machinery (JSON is YAML, so every problem has its line and
// column), then what a schema cannot say: the parts of the spec cairn does not implement, and
// paths that would write outside the host's writable root.
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ValidateFunction } from 'ajv';
import type { Problem, SourceIssue } from '../document/issues.js';
import { compileSchema } from '../document/schema.js';
import { SourceFileError, validateYamlText } from '../document/validate-yaml.js';
import { CairnError } from '../errors.js';
import { shipped } from '../install.js';
import schema from './ignition.schema.json' with { type: 'json' };

/** The most a config may be: Ignition configs carry whole files as data: URLs, but a host's first boot is no place for more. */
export const MAX_CONFIG_BYTES = 4 << 20;

export interface Owner {
  id?: number | null;
  name?: string | null;
}

export interface Resource {
  source?: string | null;
  compression?: string | null;
  verification?: { hash?: string | null };
}

export interface IgnitionUser {
  name: string;
  passwordHash?: string | null;
  sshAuthorizedKeys?: string[];
  uid?: number | null;
  gecos?: string | null;
  homeDir?: string | null;
  noCreateHome?: boolean | null;
  primaryGroup?: string | null;
  groups?: string[];
  noUserGroup?: boolean | null;
  shell?: string | null;
}

export interface IgnitionFile {
  path: string;
  overwrite?: boolean | null;
  mode?: number | null;
  user?: Owner;
  group?: Owner;
  contents?: Resource;
}

export interface IgnitionDirectory {
  path: string;
  overwrite?: boolean | null;
  mode?: number | null;
  user?: Owner;
  group?: Owner;
}

export interface IgnitionLink {
  path: string;
  target: string;
  hard?: boolean | null;
  overwrite?: boolean | null;
  user?: Owner;
  group?: Owner;
}

export interface IgnitionUnit {
  name: string;
  enabled?: boolean | null;
  mask?: boolean | null;
  contents?: string | null;
  dropins?: { name: string; contents?: string | null }[];
}

export interface IgnitionConfig {
  ignition: { version: string };
  passwd?: { users?: IgnitionUser[]; groups?: { name: string; gid?: number | null }[] };
  storage?: { files?: IgnitionFile[]; directories?: IgnitionDirectory[]; links?: IgnitionLink[] };
  systemd?: { units?: IgnitionUnit[] };
}

/** Fields of the spec a container host does not need, and what to do instead. */
const UNSUPPORTED: [string[], string][] = [
  [['ignition', 'config'], 'merging or replacing configs: give the whole config'],
  [['ignition', 'timeouts'], 'timeouts'],
  [['ignition', 'security'], 'custom certificate authorities'],
  [['ignition', 'proxy'], 'proxies'],
  [['storage', 'disks'], 'partitioning: the A/B layout is fixed, and the root grows to the disk by itself'],
  [['storage', 'raid'], 'RAID'],
  [['storage', 'filesystems'], 'making file systems'],
  [['storage', 'luks'], 'LUKS'],
  [['kernelArguments'], 'kernel arguments: the command line is inside the signed UKI'],
];
const UNSUPPORTED_ITEM: [string[], string, string][] = [
  [['passwd', 'users'], 'noLogInit', 'noLogInit'],
  [['passwd', 'users'], 'shouldExist', 'deleting users'],
  [['passwd', 'users'], 'system', 'system users'],
  [['passwd', 'groups'], 'passwordHash', 'group passwords'],
  [['passwd', 'groups'], 'shouldExist', 'deleting groups'],
  [['passwd', 'groups'], 'system', 'system groups'],
  [['storage', 'files'], 'append', 'appending to files'],
];

/** Where a host's first boot may not write: the verified /usr, the ESP, and what is not on disk. */
const FORBIDDEN = ['/usr', '/boot', '/efi', '/proc', '/sys', '/dev', '/run', '/tmp'];

/** Why `path` may not be provisioned, or null when it may. */
export function pathProblem(path: string): string | null {
  if (path.split('/').some((part) => part === '..' || part === '.')) return `${JSON.stringify(path)} has a . or .. component`;
  if (posix.normalize(path) !== path || path.endsWith('/')) return `${JSON.stringify(path)} is not a plain absolute path (repeated or trailing slashes)`;
  const area = FORBIDDEN.find((f) => path === f || path.startsWith(`${f}/`));
  if (area === '/usr') return `${path} is in /usr, which is read-only and verified: provision files into /etc or /var`;
  if (area) return `${path} is in ${area}, which is not part of the host's writable root`;
  return null;
}

function at(data: unknown, path: string[]): unknown {
  let node = data;
  for (const key of path) node = node !== null && typeof node === 'object' && !Array.isArray(node) ? (node as Record<string, unknown>)[key] : undefined;
  return node;
}

function checkConfig(data: unknown): Problem[] {
  const problems: Problem[] = [];
  const unsupported = (path: (string | number)[], what: string): void => {
    problems.push({ path, anchor: { kind: 'value' }, message: `cairn does not implement ${what} (this part of the Ignition spec); remove it from the config` });
  };
  for (const [path, what] of UNSUPPORTED) if (at(data, path) !== undefined) unsupported(path, what);
  for (const [list, key, what] of UNSUPPORTED_ITEM) {
    const items = at(data, list);
    if (Array.isArray(items)) items.forEach((item, i) => item && typeof item === 'object' && key in item && unsupported([...list, i, key], what));
  }
  for (const kind of ['files', 'directories', 'links']) {
    const items = at(data, ['storage', kind]);
    if (!Array.isArray(items)) continue;
    const seen = new Map<string, number>();
    items.forEach((item, i) => {
      const path = item && typeof item === 'object' ? (item as { path?: unknown }).path : undefined;
      if (typeof path !== 'string') return;
      const problem = pathProblem(path);
      if (problem) problems.push({ path: ['storage', kind, i, 'path'], anchor: { kind: 'value' }, message: problem });
      if (seen.has(path))
        problems.push({ path: ['storage', kind, i, 'path'], anchor: { kind: 'value' }, message: `${path} is also storage.${kind}[${seen.get(path)}]` });
      seen.set(path, i);
      const source = at(item, ['contents', 'source']);
      if (typeof source === 'string' && source !== '' && !/^(data:|https?:\/\/)/.test(source)) {
        problems.push({
          path: ['storage', kind, i, 'contents', 'source'],
          anchor: { kind: 'value' },
          message: `only data:, http: and https: sources are supported, not ${JSON.stringify(source.slice(0, 40))}`,
        });
      }
    });
  }
  return problems;
}

let compiled: ValidateFunction | undefined;

export class ProvisionConfigError extends SourceFileError {
  constructor(file: string, issues: SourceIssue[]) {
    super(
      file,
      issues,
      `cairn implements the part of the Ignition spec described in docs/provisioning.md and ${shipped('src/provision/ignition.schema.json')}`,
    );
    this.name = 'ProvisionConfigError';
  }
}

/** Validates config text as if read from `where`; the config, or every issue sorted by position. */
export function validateConfigText(text: string, where: string): { config?: IgnitionConfig; errors: SourceIssue[] } {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    return {
      errors: [
        {
          file: where,
          line: 1,
          column: 1,
          path: '',
          message: `the config is ${Buffer.byteLength(text)} bytes, more than the ${MAX_CONFIG_BYTES} a first boot reads`,
        },
      ],
    };
  }
  compiled ??= compileSchema(schema);
  const { data, errors } = validateYamlText(text, where, {
    validate: compiled,
    emptyMessage: 'the config is empty; expected an Ignition config with at least {"ignition": {"version": "3.4.0"}}',
    check: checkConfig,
  });
  // JSON is read as YAML (for the positions); its syntax errors are a JSON file's.
  const named = errors.map((e) => ({ ...e, message: e.message.replace(/^invalid YAML: /, 'not valid JSON: ') }));
  return data === undefined ? { errors: named } : { config: data as IgnitionConfig, errors: named };
}

export function parseConfig(text: string, where: string): IgnitionConfig {
  const { config, errors } = validateConfigText(text, where);
  if (!config) throw new ProvisionConfigError(where, errors);
  return config;
}

export async function loadConfigFile(file: string): Promise<IgnitionConfig> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new CairnError(
      `cannot read the config ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`,
      'name an Ignition config (JSON), e.g. from butane',
    );
  });
  return parseConfig(text, file);
}
