import type { CommandModule } from 'yargs';
import { buildReportJson, formatBuildReport, inspectBuild } from '../release/inspect-build.js';
import { optional, OPTIONS, output } from './options.js';

interface Args {
  target: string;
  key?: string;
  json: boolean;
}

async function inspectHandler(args: Args): Promise<void> {
  const report = await inspectBuild(args.target, args.key);
  output(args.json, buildReportJson(report), () => formatBuildReport(report));
}

const command: CommandModule<object, Args> = {
  command: 'inspect <target>',
  describe: "Show a build: versions, kernel, root hash, artifacts, disk layout, the ESP's boot entries and signature status",
  builder: (y) =>
    y
      .positional('target', { type: 'string', demandOption: true, describe: 'Build folder (images/<name>/<version>) or its disk.raw' })
      .option('key', optional(OPTIONS.key))
      .option('json', OPTIONS.json)
      .example('$0 inspect images/tiny/0.1.0 --key keys/release.pub.asc', 'everything about one build, signature checked'),
  handler: inspectHandler,
};

export default command;
