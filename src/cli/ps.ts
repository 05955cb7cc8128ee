import type { CommandModule } from 'yargs';
import { containerRecords, formatContainerTable } from '../runtime/container-table.js';
import { listContainers } from '../runtime/state.js';
import { OPTIONS, output } from './options.js';

interface Args {
  json: boolean;
}

async function psHandler(args: Args): Promise<void> {
  const all = await listContainers();
  output(args.json, containerRecords(all), () => formatContainerTable(all));
}

const command: CommandModule<object, Args> = {
  command: 'ps',
  describe: 'List containers: name, status, exit code, supervisor and init pids, command',
  builder: (y) =>
    y
      .option('json', OPTIONS.json)
      .epilogue(
        'Statuses: running; exited (with the exit code, 128+N for signal N); created (starting); dead (its supervisor was killed). State lives under /run/cairn/containers (CAIRN_RUN_DIR).',
      ),
  handler: psHandler,
};

export default command;
