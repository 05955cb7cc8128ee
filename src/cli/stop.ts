import type { CommandModule } from 'yargs';
import { stopContainer } from '../runtime/stop.js';

interface Args {
  names: string[];
  time: number;
}

async function stopHandler(args: Args): Promise<void> {
  for (const name of args.names) {
    const s = await stopContainer(String(name), args.time);
    process.stdout.write(`${name}: ${s.status}${s.exit ? ` (${s.exit.code}${s.exit.oomKilled ? ', out of memory' : ''})` : ''}\n`);
  }
}

const command: CommandModule<object, Args> = {
  command: 'stop <names..>',
  describe: 'Stop running containers: SIGTERM to the command, SIGKILL to all of the container after --time seconds',
  builder: (y) =>
    y
      .positional('names', { type: 'string', array: true, demandOption: true, describe: 'Container names (see cairn ps)' })
      .option('time', { alias: 't', type: 'number', default: 10, describe: 'Seconds to wait after SIGTERM before SIGKILL' })
      .check((a) => {
        if (!Number.isFinite(a.time) || a.time < 0) throw new Error('--time is a number of seconds, 0 or more');
        return true;
      }),
  handler: stopHandler,
};

export default command;
