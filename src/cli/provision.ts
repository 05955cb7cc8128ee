import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Argv, CommandModule } from 'yargs';
import { ProvisionConfigError, validateConfigText } from '../provision/config.js';
import { provisionFirstBoot } from '../provision/first-boot.js';
import { growRoot } from '../provision/grow-root.js';
import { KEEPABLE, requestFactoryReset, type Keepable } from '../provision/reset.js';
import { CairnError } from '../errors.js';
import { CHECK_JSON, logLine, OPTIONS, output, reportCheck } from './options.js';

interface CheckArgs {
  file: string;
  json: boolean;
}

async function checkHandler(args: CheckArgs): Promise<void> {
  const text = await readFile(args.file, 'utf8').catch((err: Error) => {
    throw new CairnError(`cannot read ${args.file}: ${err.message}`, 'name an Ignition config (JSON)');
  });
  const { config, errors } = validateConfigText(text, args.file);
  reportCheck(
    args.json,
    { value: config, errors },
    (issues) => new ProvisionConfigError(args.file, issues),
    (c) =>
      `${args.file}: ok (Ignition ${c.ignition.version}: ${c.passwd?.users?.length ?? 0} users, ${c.storage?.files?.length ?? 0} files, ${c.systemd?.units?.length ?? 0} units)\n`,
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
      .option('json', CHECK_JSON)
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

async function growHandler(args: { json: boolean }): Promise<void> {
  const report = await growRoot();
  output(args.json, report, (r) => `${r.grown ? 'grew' : 'kept'} ${r.disk} partition ${r.partition} at ${(r.size / 2 ** 30).toFixed(2)} GiB\n`);
}

const grow: CommandModule<object, { json: boolean }> = {
  command: 'grow-root',
  describe:
    "Grow the writable root (the disk's last partition) and its ext4 to fill the disk, moving the backup GPT to the end (run once by cairn-grow-root.service)",
  builder: (y) => y.option('json', OPTIONS.json),
  handler: growHandler,
};

interface ResetArgs {
  keep: Keepable[];
  'keep-path': string[];
  reboot: boolean;
  json: boolean;
}

async function resetHandler(args: ResetArgs): Promise<void> {
  const kept = await requestFactoryReset('/', args.keep, args['keep-path']);
  output(
    args.json,
    { kept, reboot: args.reboot },
    () => `the next boot wipes the writable root${kept.length ? `, keeping ${kept.join(', ')}` : ''}, then provisions the host again\n`,
  );
  if (args.reboot) await promisify(execFile)('systemctl', ['reboot']);
}

const reset: CommandModule<object, ResetArgs> = {
  command: 'reset',
  describe: "Factory reset: the next boot wipes the writable root (/etc, /var, homes, containers' data) but what you keep, and provisions the host again",
  builder: (y) =>
    y
      .option('keep', {
        choices: Object.keys(KEEPABLE) as Keepable[],
        array: true,
        default: [] as Keepable[],
        describe: 'Keep these (repeatable): ssh-host-keys, agent-state',
      })
      .option('keep-path', { type: 'string', array: true, default: [] as string[], describe: 'Keep this absolute path in the writable root too (repeatable)' })
      .option('reboot', { type: 'boolean', default: false, describe: 'Reboot now' })
      .option('json', OPTIONS.json)
      .example('$0 provision reset --keep ssh-host-keys --reboot', 'the same host keys, everything else as on its first boot'),
  handler: resetHandler,
};

const command: CommandModule<object, object> = {
  command: 'provision <command>',
  describe: 'First-boot provisioning from Ignition configs (docs/provisioning.md)',
  builder: (y: Argv) => y.command(check).command(apply).command(grow).command(reset).demandCommand(1, 'Name a provision command: see the list above.'),
  handler: () => undefined,
};

export default command;
