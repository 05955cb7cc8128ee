import { readFile } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { ProvisionConfigError, validateConfigText } from '../provision/config.js';
import { provisionFirstBoot } from '../provision/first-boot.js';
import { CairnError } from '../errors.js';
import { logLine, OPTIONS, output } from './options.js';

interface CheckArgs {
  file: string;
  json: boolean;
}

async function checkHandler(args: CheckArgs): Promise<void> {
  const text = await readFile(args.file, 'utf8').catch((err: Error) => {
    throw new CairnError(`cannot read ${args.file}: ${err.message}`, 'name an Ignition config (JSON)');
  });
  const { config, errors } = validateConfigText(text, args.file);
  if (args.json) {
    output(true, { ok: errors.length === 0, errors }, () => '');
    if (errors.length > 0) process.exitCode = 1;
    return;
  }
  if (!config) throw new ProvisionConfigError(args.file, errors);
  process.stdout.write(
    `${args.file}: ok (Ignition ${config.ignition.version}: ${config.passwd?.users?.length ?? 0} users, ${config.storage?.files?.length ?? 0} files, ${config.systemd?.units?.length ?? 0} units)\n`,
  );
}

interface ApplyArgs {
  root: string;
  config?: string;
  json: boolean;
}

async function applyHandler(args: ApplyArgs): Promise<void> {
  const config = args.config ? { source: args.config, text: await readFile(args.config, 'utf8') } : undefined;
  const outcome = await provisionFirstBoot({ root: args.root, config, log: logLine });
  output(args.json, outcome, (o) => `${o.status}\n`);
}

const check: CommandModule<object, CheckArgs> = {
  command: 'check <file>',
  describe: 'Check an Ignition config before any host boots with it: every problem with its line and column, and every field cairn does not implement',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Ignition config (JSON, spec 3.0.0 to 3.5.0), e.g. from butane' })
      .option('json', { ...OPTIONS.json, describe: 'Print {ok, errors: [{file, line, column, path, message}]}' })
      .example('$0 provision check host.ign', 'exit 0 only if a cairn host can apply it'),
  handler: checkHandler,
};

const apply: CommandModule<object, ApplyArgs> = {
  command: 'apply',
  describe:
    "The first boot's provisioning (run once by cairn-provision.service): find the config (fw_cfg, config drive, metadata service), apply it, record it",
  builder: (y) =>
    y
      .option('root', { type: 'string', default: '/', describe: "The host's root (another folder: provision a root that is not running)" })
      .option('config', { type: 'string', describe: 'Apply this config file instead of looking for one' })
      .option('json', OPTIONS.json),
  handler: applyHandler,
};

const command: CommandModule<object, object> = {
  command: 'provision <command>',
  describe: 'First-boot provisioning from Ignition configs (docs/provisioning.md)',
  builder: (y: Argv) => y.command(check).command(apply).demandCommand(1, 'Name a provision command: see the list above.'),
  handler: () => undefined,
};

export default command;
