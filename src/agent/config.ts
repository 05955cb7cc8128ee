// /etc/cairn/agent.yaml: read and validated with the recipe machinery (schema plus the checks a
// schema cannot express), so a mistake is reported as `file:line:col: key.path: expected …`.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { CairnError } from '../errors.js';
import { shipped } from '../install.js';
import { hostFile } from '../recipe/checks.js';
import type { Problem, SourceIssue } from '../document/issues.js';
import { parseDuration, parseSize } from '../document/units.js';
import { compileSchema } from '../document/schema.js';
import { SourceFileError, validateYamlText } from '../document/validate-yaml.js';
import type { DataPath } from '../document/yaml-locate.js';
import schema from './agent-config.schema.json' with { type: 'json' };
import type { HealthCheck, HealthConfig } from './health.js';
import { isTimeZone, type RebootStrategy, type Weekday } from './reboot-strategy.js';

export const DEFAULT_AGENT_CONFIG = '/etc/cairn/agent.yaml';

/** Where updates come from: a channel to follow, or one release to stay on. */
export type UpdateSource = { kind: 'channel'; channel: string } | { kind: 'version'; version: string };

export interface AgentConfig {
  /** Absolute path of the file this came from. */
  file: string;
  repository: string;
  source: UpdateSource;
  /** Absolute paths of armored public keys. */
  keys: string[];
  wariness: number | null;
  strategy: RebootStrategy;
  health: HealthConfig;
  /** Bytes per second, or null for no limit. */
  bandwidthLimit: number | null;
  /** Seconds between channel checks. */
  pollInterval: number;
  stateDir: string;
  /** The configured ESP mount point, or null to look for one (see locateEsp). */
  esp: string | null;
}

/** An agent configuration that does not validate; the message lists every issue. */
export class AgentConfigError extends SourceFileError {
  constructor(file: string, issues: SourceIssue[]) {
    super(file, issues, `every setting is described in docs/agent.md and ${shipped('src/agent/agent-config.schema.json')}`);
    this.name = 'AgentConfigError';
  }
}

export async function loadAgentConfig(file = DEFAULT_AGENT_CONFIG): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CairnError(
      `cannot read the agent configuration ${file}: ${code === 'ENOENT' ? 'no such file' : String(code ?? err)}`,
      'write it with at least repository and keys (docs/agent.md has an example); images built from a recipe with `update:` ship one',
    );
  }
  const { config, errors } = validateAgentConfigText(text, file);
  if (!config) throw new AgentConfigError(file, errors);
  return config;
}

/** Validates configuration text as if read from `file` (which anchors relative key paths). */
export function validateAgentConfigText(text: string, file: string): { config?: AgentConfig; errors: SourceIssue[] } {
  const baseDir = dirname(resolve(file));
  const { data, errors } = validateYamlText(text, file, {
    validate: schemaValidator(),
    emptyMessage: 'the agent configuration is empty; expected a mapping with at least repository and keys',
    check: (value) => checkConfig(value, baseDir),
  });
  return data === undefined ? { errors } : { config: toConfig(data as Written, file), errors };
}

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  compiled ??= compileSchema(schema);
  return compiled;
}

type Duration = number | string;
type Named = string | { name: string; timeout?: Duration };

/** The configuration as written, after the schema accepted it and filled in its defaults. */
interface Written {
  repository: string;
  channel?: string;
  version?: string;
  keys: string[];
  wariness: number | null;
  strategy: { type: RebootStrategy['type']; days?: Weekday[]; start?: string; end?: string; 'time-zone'?: string; url?: string; group?: string };
  health: {
    timeout: Duration;
    'check-timeout': Duration;
    units: Named[];
    containers: Named[];
    commands: { command: string[]; timeout?: Duration }[];
  };
  'bandwidth-limit': number | string | null;
  'poll-interval': Duration;
  'state-dir': string;
  esp: string | null;
}

function toConfig(w: Written, file: string): AgentConfig {
  const configFile = resolve(file);
  const checkTimeout = parseDuration(w.health['check-timeout']);
  const timeoutOf = (t: Duration | undefined): number => (t === undefined ? checkTimeout : parseDuration(t));
  const named = (kind: 'unit' | 'container', entry: Named): HealthCheck =>
    typeof entry === 'string' ? { kind, name: entry, timeout: checkTimeout } : { kind, name: entry.name, timeout: timeoutOf(entry.timeout) };
  return {
    file: configFile,
    repository: w.repository.replace(/\/+$/, ''),
    source: w.version !== undefined ? { kind: 'version', version: w.version } : { kind: 'channel', channel: w.channel ?? 'stable' },
    keys: w.keys.map((k) => resolve(dirname(configFile), k)),
    wariness: w.wariness,
    strategy: toStrategy(w.strategy),
    health: {
      timeout: parseDuration(w.health.timeout),
      checks: [
        ...w.health.units.map((u) => named('unit', u)),
        ...w.health.containers.map((c) => named('container', c)),
        ...w.health.commands.map((c): HealthCheck => ({ kind: 'command', command: c.command, timeout: timeoutOf(c.timeout) })),
      ],
    },
    bandwidthLimit: w['bandwidth-limit'] === null ? null : parseSize(w['bandwidth-limit']),
    pollInterval: parseDuration(w['poll-interval']),
    stateDir: w['state-dir'],
    esp: w.esp,
  };
}

function toStrategy(s: Written['strategy']): RebootStrategy {
  switch (s.type) {
    case 'maintenance-window':
      return { type: s.type, days: s.days!, start: s.start!, end: s.end!, timeZone: s['time-zone']! };
    case 'fleetlock':
      return { type: s.type, url: s.url!.replace(/\/+$/, ''), group: s.group ?? 'default' };
    default:
      return { type: s.type };
  }
}

type Entry = Record<string, unknown>;

const isEntry = (value: unknown): value is Entry => value !== null && typeof value === 'object' && !Array.isArray(value);

/** Keys that only mean something for one strategy type. */
const STRATEGY_KEYS: Record<string, string> = {
  days: 'maintenance-window',
  start: 'maintenance-window',
  end: 'maintenance-window',
  'time-zone': 'maintenance-window',
  url: 'fleetlock',
  group: 'fleetlock',
};

/** What the schema cannot say; runs on data that may have failed it, so it checks shapes first. */
function checkConfig(data: unknown, baseDir: string): Problem[] {
  if (!isEntry(data)) return [];
  const problems: Problem[] = [];
  if (data.channel !== undefined && data.version !== undefined) {
    problems.push({ path: [], anchor: { kind: 'key', key: 'version' }, message: 'give channel or version, not both: a pinned version follows no channel' });
  }
  if (Array.isArray(data.keys)) data.keys.forEach((key, i) => problems.push(...hostFile(key, ['keys', i], baseDir)));
  if (isEntry(data.strategy)) problems.push(...checkStrategy(data.strategy, ['strategy']));
  if (isEntry(data.health) && Array.isArray(data.health.commands)) {
    data.health.commands.forEach((entry, i) => {
      const program = isEntry(entry) && Array.isArray(entry.command) ? entry.command[0] : undefined;
      if (typeof program === 'string' && !program.startsWith('/')) {
        problems.push({
          path: ['health', 'commands', i, 'command', 0],
          anchor: { kind: 'value' },
          message: `expected an absolute program path (the agent runs no shell and has no PATH to search), got ${JSON.stringify(program)}`,
        });
      }
    });
  }
  return problems;
}

function checkStrategy(strategy: Entry, path: DataPath): Problem[] {
  const problems: Problem[] = [];
  const type = strategy.type;
  if (typeof type !== 'string') return problems;
  for (const key of Object.keys(strategy)) {
    const owner = STRATEGY_KEYS[key];
    if (owner && owner !== type) {
      problems.push({ path, anchor: { kind: 'key', key }, message: `"${key}" belongs to type ${owner}, not ${type}` });
    }
  }
  if (type !== 'maintenance-window') return problems;
  const zone = strategy['time-zone'];
  if (typeof zone === 'string' && !isTimeZone(zone)) {
    problems.push({
      path: [...path, 'time-zone'],
      anchor: { kind: 'value' },
      message: `expected an IANA time zone (like Europe/Berlin or UTC), got ${JSON.stringify(zone)}, which this system does not know`,
    });
  }
  if (typeof strategy.start === 'string' && strategy.start === strategy.end) {
    problems.push({
      path: [...path, 'end'],
      anchor: { kind: 'value' },
      message: `the window opens and closes at ${strategy.start}; set an end different from start`,
    });
  }
  return problems;
}
