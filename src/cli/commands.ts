import type { CommandModule } from 'yargs';

// Each command's arguments are typed in its own module; the list only needs them as commands.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = CommandModule<any, any>;

/**
 * The commands by name, in the order --help lists them, each loaded only when needed: the build
 * commands pull in openpgp, undici and ajv, which a container start (`cairn run`) must not wait for.
 */
export const COMMANDS: Record<string, () => Promise<{ default: AnyCommand }>> = {
  validate: () => import('./validate.js'),
  lock: () => import('./lock.js'),
  build: () => import('./build.js'),
  keys: () => import('./keys.js'),
  verify: () => import('./verify.js'),
  inspect: () => import('./inspect.js'),
  boot: () => import('./boot.js'),
  publish: () => import('./publish.js'),
  channel: () => import('./channel.js'),
  delta: () => import('./delta.js'),
  serve: () => import('./serve.js'),
  provision: () => import('./provision.js'),
  agent: () => import('./agent.js'),
  layer: () => import('./layer.js'),
  run: () => import('./run.js'),
  ps: () => import('./ps.js'),
  logs: () => import('./logs.js'),
  stop: () => import('./stop.js'),
  rm: () => import('./rm.js'),
};

/** The modules needed for `argv`: the named command alone, or all of them (help, typos). */
export async function commandsFor(argv: string[]): Promise<AnyCommand[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const names = first !== undefined && first in COMMANDS && !argv.includes('--help') && !argv.includes('-h') ? [first] : Object.keys(COMMANDS);
  return Promise.all(names.map(async (name) => (await COMMANDS[name]!()).default));
}
