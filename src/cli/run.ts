import type { CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { isImageReference } from '../runtime/root.js';
import { parseCpus, parseEnv, parseMemory, parsePids, parseUser, parseVolume } from '../runtime/run-options.js';
import { ContainerStartError } from '../runtime/launch.js';
import { startContainer, waitForeground, type RunRequest, type Started } from '../runtime/run.js';
import { NET_MODES, type NetMode } from '../runtime/spec.js';
import { logLine } from './options.js';

interface Args {
  words?: string[];
  '--'?: (string | number)[];
  name?: string;
  usr?: string;
  layer?: string | string[];
  memory?: string;
  cpus?: string;
  pids?: string;
  net: NetMode;
  volume?: string | string[];
  env?: string | string[];
  user: string;
  workdir?: string;
  hostname?: string;
  detach: boolean;
  tty?: boolean;
  rm?: boolean;
  userns: boolean;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : [v].flat());

/** `[IMAGE] -- CMD ARGS...`; the words before -- are the command when no image leads them. */
function imageAndCommand(args: Args): { image?: string; command: string[] } {
  const words = (args.words ?? []).map(String);
  const rest = (args['--'] ?? []).map(String);
  const image = words[0] !== undefined && isImageReference(words[0]) ? words.shift() : undefined;
  if (words.length > 0 && rest.length > 0) throw new CairnError(`unexpected ${words.join(' ')} before --`, 'put the whole command after --');
  return { image, command: words.length > 0 ? words : rest };
}

async function runHandler(args: Args): Promise<void> {
  const { image, command } = imageAndCommand(args);
  if (command.length === 0 && image === undefined) throw new CairnError('no command to run', 'put it after --, e.g. cairn run -- /bin/sh -c "echo hi"');
  const env = list(args.env)
    .map((e) => parseEnv(e))
    .filter((e): e is string => e !== null);
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const request: RunRequest = {
    name: args.name,
    root: { usr: args.usr, layers: list(args.layer), image },
    command,
    env,
    user: parseUser(args.user),
    cwd: args.workdir,
    hostname: args.hostname,
    limits: {
      memoryBytes: args.memory === undefined ? undefined : parseMemory(args.memory),
      cpus: args.cpus === undefined ? undefined : parseCpus(args.cpus),
      pids: args.pids === undefined ? undefined : parsePids(args.pids),
    },
    net: args.net,
    binds: list(args.volume).map((v) => parseVolume(v)),
    detach: args.detach,
    tty: !args.detach && (args.tty ?? interactive),
    remove: args.rm ?? !args.detach,
    userns: args.userns,
  };
  let started: Started;
  try {
    started = await startContainer(request);
  } catch (err) {
    if (!(err instanceof ContainerStartError)) throw err;
    // the exit code says which kind of failure it was, as docker's and podman's do
    process.stderr.write(`cairn: ${err.message}\n`);
    process.exitCode = err.code;
    return;
  }
  if (args.detach) {
    started.launched.detach();
    // The container's mount namespace keeps its own hold on the layer mounts: the host's go.
    await started.release();
    process.stdout.write(`${started.name}\n`);
    return;
  }
  const exit = await waitForeground(started, request.remove);
  if (exit.oomKilled) logLine(`${started.name} was killed for exceeding its memory limit (out of memory)`);
  process.exitCode = exit.code;
}

const command: CommandModule<object, Args> = {
  command: 'run [words..]',
  describe: "Run a command in a container that shares this host's read-only /usr (copies nothing)",
  builder: (y) =>
    y
      .parserConfiguration({ 'populate--': true })
      .positional('words', {
        type: 'string',
        array: true,
        describe: 'oci-archive:FILE or oci:DIR to run an OCI image, or the command (for one with no options)',
      })
      .option('name', { type: 'string', describe: 'Container name (default: the command and a random suffix)' })
      .option('usr', { type: 'string', describe: "Tree to share as /usr (default the host's), e.g. images/<name>/<version>/rootfs/usr" })
      .option('layer', { type: 'string', describe: 'App layer to overlay on /usr (repeatable, top first)' })
      .option('memory', { alias: 'm', type: 'string', describe: 'Memory limit, e.g. 256m or 2g; the kernel OOM-kills past it' })
      .option('cpus', { type: 'string', describe: 'CPU limit in CPUs, e.g. 0.5' })
      .option('pids', { type: 'string', describe: 'Limit on processes and threads' })
      .option('net', {
        choices: NET_MODES,
        default: 'private' as NetMode,
        describe: "private: own network namespace with loopback; none: not even loopback up; host: the host's network",
      })
      .option('volume', { alias: 'v', type: 'string', describe: 'Bind mount SRC:DST[:ro] (repeatable)' })
      .option('env', { alias: 'e', type: 'string', describe: 'NAME=VALUE, or NAME to pass this value through (repeatable)' })
      .option('user', { alias: 'u', type: 'string', default: 'root', describe: 'root, nobody, UID or UID:GID' })
      .option('workdir', { alias: 'w', type: 'string', describe: "Working directory in the container (default: the user's home, / for others)" })
      .option('hostname', { type: 'string', describe: 'Host name (default: the container name)' })
      .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Run in the background; see cairn ps, logs, stop, rm' })
      .option('tty', { alias: 't', type: 'boolean', describe: 'Give the command a terminal (default: when stdin and stdout are terminals)' })
      .option('rm', { type: 'boolean', describe: "Delete the container's state and data when it exits (default for foreground runs; --no-rm keeps them)" })
      .option('userns', { type: 'boolean', default: false, describe: "Map the container's ids to 100000-165535 on the host (a user namespace)" })
      .epilogue(
        "The container gets the host's /usr read-only, its own /etc (passwd, group, hosts, resolv.conf, hostname), " +
          'writable /var, /home and /root kept under /var/lib/cairn/containers/NAME, tmpfs /tmp and /run, its own PID, ' +
          'mount, UTS, IPC, cgroup and network namespaces, eleven capabilities, no_new_privs and a seccomp allowlist. ' +
          "The exit code is the command's (128+N when signal N ended it); signals to cairn run go to the command. " +
          'Setup failures exit 125, a command that cannot run 126, one that does not exist 127.',
      )
      .example('$0 run -- /bin/sh -c "id; hostname"', 'a throwaway container from the host /usr')
      .example('$0 run -d --name web --memory 256m -v ./site:/srv:ro -- python3 -m http.server -d /srv', 'a detached one with limits'),
  handler: runHandler,
};

export default command;
