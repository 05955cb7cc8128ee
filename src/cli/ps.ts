import type { CommandModule } from 'yargs';
import { listContainers, type ContainerStatus } from '../runtime/state.js';
import { jsonOption } from './options.js';

interface Args {
  json: boolean;
}

function describe(s: ContainerStatus): string {
  if (s.status !== 'exited' || !s.exit) return s.status;
  return `exited (${s.exit.code}${s.exit.oomKilled ? ', out of memory' : ''})`;
}

const command: CommandModule<object, Args> = {
  command: 'ps',
  describe: 'List containers: name, status, exit code, supervisor and init pids, command',
  builder: (y) =>
    y
      .option('json', jsonOption)
      .epilogue('Statuses: running; exited (with the exit code, 128+N for signal N); created (starting); dead (its supervisor was killed). State lives under /run/cairn/containers (CAIRN_RUN_DIR).'),
  handler: async (args) => {
    const all = await listContainers();
    if (args.json) {
      const out = all.map((s) => ({
        name: s.state.name, status: s.status, exit: s.exit, createdAt: s.state.createdAt, command: s.state.command,
        usr: s.state.usr, net: s.state.net, detached: s.state.detached,
        supervisorPid: s.status === 'running' ? s.state.supervisor?.pid ?? null : null,
        pid: s.status === 'running' ? s.state.init?.pid ?? null : null,
      }));
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return;
    }
    const rows = [['NAME', 'STATUS', 'PID', 'CREATED', 'COMMAND']];
    for (const s of all) {
      rows.push([s.state.name, describe(s), s.status === 'running' ? String(s.state.init?.pid ?? '') : '', s.state.createdAt.replace(/\.\d+Z$/, 'Z'), s.state.command.join(' ')]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
  },
};

export default command;
