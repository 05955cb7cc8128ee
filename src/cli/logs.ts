import type { CommandModule } from 'yargs';
import { copyLogs } from '../runtime/logs.js';

interface Args {
  name: string;
  follow: boolean;
}

async function logsHandler(args: Args): Promise<void> {
  await copyLogs(args.name, process.stdout, args.follow);
}

const command: CommandModule<object, Args> = {
  command: 'logs <name>',
  describe: "Print a detached container's output (stdout and stderr, as written)",
  builder: (y) =>
    y
      .positional('name', { type: 'string', demandOption: true, describe: 'Container name (see cairn ps)' })
      .option('follow', { alias: 'f', type: 'boolean', default: false, describe: 'Keep printing until the container exits' }),
  handler: logsHandler,
};

export default command;
