#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CairnError } from '../errors.js';
import { commandsFor } from './commands.js';

async function main(): Promise<void> {
  const argv = hideBin(process.argv);
  let cli = yargs(argv)
    .scriptName('cairn')
    .usage('$0 <command> [options]\n\nBuilds immutable container-host OS images from Debian packages and keeps fleets of them up to date.')
    .strict()
    .demandCommand(1, 'Name a command: see the list above.')
    .recommendCommands()
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`cairn: ${msg}\nRun "cairn --help" for usage.\n`);
      process.exit(2);
    })
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(100, process.stdout.columns ?? 100));
  for (const command of await commandsFor(argv)) cli = cli.command(command);
  await cli.parseAsync();
}

main().then(
  // A command is done when its handler is: nothing left behind (a keep-alive socket, a child's
  // pipe) may keep the process, and with it a oneshot unit such as the boot check, running.
  () => process.exit(),
  (err: unknown) => {
    if (err instanceof CairnError) {
      process.stderr.write(`cairn: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ''}`);
    } else {
      process.stderr.write(`cairn: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    }
    process.exit(1);
  },
);
