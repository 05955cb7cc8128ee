import type { Argv, CommandModule } from 'yargs';
import { deltaReport, deltaReportJson, formatDeltaReport } from '../release/delta-report.js';
import { OPTIONS, output } from './options.js';

interface Args {
  old: string;
  new: string;
  json: boolean;
}

async function planHandler(args: Args): Promise<void> {
  const report = await deltaReport(args.old, args.new);
  output(args.json, deltaReportJson(report), () => formatDeltaReport(report));
}

const plan: CommandModule<object, Args> = {
  command: 'plan <old> <new>',
  describe:
    'Say what a host running OLD must download to install NEW: the chunks of NEW it cannot take from its own slot, or the patches that make them from chunks it has',
  builder: (y) =>
    y
      .positional('old', { type: 'string', demandOption: true, describe: 'What the host runs: a build folder (its usr.erofs, usr.verity and UKI)' })
      .positional('new', {
        type: 'string',
        demandOption: true,
        describe: 'What it installs: a published release folder (REPO/<name>/releases/<version>) or a build folder',
      })
      .option('json', OPTIONS.json)
      .example('$0 delta plan images/container-host/0.1.0 repo/container-host/releases/0.2.0', 'bytes to download against the full image'),
  handler: planHandler,
};

const command: CommandModule<object, object> = {
  command: 'delta <command>',
  describe: 'Plan delta updates between releases',
  builder: (y: Argv) => y.command(plan).demandCommand(1, 'Name a delta command: see the list above.'),
  handler: () => undefined,
};

export default command;
