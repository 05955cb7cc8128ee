import type { CommandModule } from 'yargs';
import { removeContainer } from '../runtime/stop.js';

interface Args {
  names: string[];
  force: boolean;
}

async function rmHandler(args: Args): Promise<void> {
  for (const name of args.names) {
    await removeContainer(String(name), args.force);
    process.stdout.write(`${name}\n`);
  }
}

const command: CommandModule<object, Args> = {
  command: 'rm <names..>',
  describe: 'Delete containers: their state under /run/cairn and their data (var, home, root, log) under /var/lib/cairn',
  builder: (y) =>
    y
      .positional('names', { type: 'string', array: true, demandOption: true, describe: 'Container names (see cairn ps)' })
      .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Kill a running container first' }),
  handler: rmHandler,
};

export default command;
