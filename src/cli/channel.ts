import type { Argv, CommandModule } from 'yargs';
import { parseDuration, parseTime } from '../document/units.js';
import { CairnError } from '../errors.js';
import type { ChannelDoc } from '../release/channel.js';
import {
  channelStatus,
  DEFAULT_EXPIRY_SECONDS,
  formatChannelStatus,
  listChannels,
  phasedRollout,
  pin,
  promote,
  renew,
  resolveName,
  revoke,
  type ChannelWrite,
} from '../release/channel-ops.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { OPTIONS, output } from './options.js';

interface Common {
  repo: string;
  name?: string;
  json: boolean;
}

interface Signed extends Common {
  'sign-key': string;
  expires: string;
}

const common = <T>(y: Argv<T>) =>
  y
    .option('repo', OPTIONS.repo)
    .option('name', { type: 'string', describe: 'Image name (needed only when the repository holds several)' })
    .option('json', OPTIONS.json);

const signed = <T>(y: Argv<T>) =>
  common(y)
    .option('sign-key', OPTIONS.signKey)
    .option('expires', {
      type: 'string',
      default: `${DEFAULT_EXPIRY_SECONDS / 86400}d`,
      describe: 'How long the signed channel stays valid; hosts refuse it after that (renew before)',
    });

async function writer(args: Signed): Promise<ChannelWrite> {
  return {
    repoDir: args.repo,
    name: await resolveName(args.repo, args.name),
    key: await loadSigningKey(args['sign-key']),
    expiresSeconds: parseDuration(args.expires, '--expires'),
  };
}

function printChannels(docs: ChannelDoc[], json: boolean): void {
  const now = new Date();
  output(
    json,
    docs.map((d) => channelStatus(d, now)),
    (status) => status.map(formatChannelStatus).join(''),
  );
}

interface PromoteArgs extends Signed {
  version: string;
  to: string;
  rollout: number;
  start?: string;
  duration?: string;
  barrier: boolean;
}

async function promoteHandler(args: PromoteArgs): Promise<void> {
  const rollout = phasedRollout(
    args.rollout,
    args.start ? parseTime(args.start, '--start') : undefined,
    args.duration ? parseDuration(args.duration, '--duration') : undefined,
  );
  printChannels([await promote({ ...(await writer(args)), version: args.version, channel: args.to, rollout, barrier: args.barrier })], args.json);
}

interface PinArgs extends Signed {
  channel: string;
  version?: string;
  unpin: boolean;
}

async function pinHandler(args: PinArgs): Promise<void> {
  if (!args.unpin && !args.version) throw new CairnError('name the version to pin the channel to, or pass --unpin');
  printChannels([await pin({ ...(await writer(args)), channel: args.channel, version: args.version, unpin: args.unpin })], args.json);
}

async function revokeHandler(args: Signed & { version: string }): Promise<void> {
  printChannels(await revoke({ ...(await writer(args)), version: args.version }), args.json);
}

async function renewHandler(args: Signed & { channel: string }): Promise<void> {
  printChannels([await renew(await writer(args), args.channel)], args.json);
}

async function statusHandler(args: Common): Promise<void> {
  printChannels(await listChannels(args.repo, await resolveName(args.repo, args.name)), args.json);
}

const promoteCommand: CommandModule<object, PromoteArgs> = {
  command: 'promote <version>',
  describe: 'Offer a published release on a channel, to all hosts or in phases',
  builder: (y) =>
    signed(y)
      .positional('version', { type: 'string', demandOption: true })
      .option('to', { type: 'string', demandOption: true, describe: 'Channel (any name: stable, beta, canary, …); made if missing' })
      .option('rollout', { type: 'number', default: 100, describe: 'Percent of hosts offered the release at --start' })
      .option('start', { type: 'string', describe: 'When the rollout starts (ISO 8601 or "now"; default now)' })
      .option('duration', { type: 'string', describe: 'How long the share takes to rise from --rollout to 100% (e.g. 2d)' })
      .option('barrier', {
        type: 'boolean',
        default: false,
        describe: 'Every older host must install this release before any later one (key rotation, format changes)',
      })
      .example(
        '$0 channel promote 0.2.0 --to stable --rollout 10 --duration 2d --repo repo --sign-key keys/release.asc',
        '10% of hosts now, all of them in two days',
      ),
  handler: promoteHandler,
};

const pinCommand: CommandModule<object, PinArgs> = {
  command: 'pin <channel> [version]',
  describe: 'Hold a channel at one version, even an older one (hosts follow it back); --unpin releases it',
  builder: (y) =>
    signed(y)
      .positional('channel', { type: 'string', demandOption: true })
      .positional('version', { type: 'string' })
      .option('unpin', { type: 'boolean', default: false, describe: 'Let the channel be promoted again' })
      .example('$0 channel pin db-hosts 0.1.4 --repo repo --sign-key keys/release.asc', 'hosts configured with channel db-hosts stay on (or go back to) 0.1.4'),
  handler: pinHandler,
};

const revokeCommand: CommandModule<object, Signed & { version: string }> = {
  command: 'revoke <version>',
  describe: 'Withdraw a release from every channel: hosts that have not taken it never will; hosts on it move on at the next release',
  builder: (y) => signed(y).positional('version', { type: 'string', demandOption: true }),
  handler: revokeHandler,
};

const renewCommand: CommandModule<object, Signed & { channel: string }> = {
  command: 'renew <channel>',
  describe: 'Sign a channel again with a new expiry, unchanged otherwise (run it from a timer well before --expires runs out)',
  builder: (y) => signed(y).positional('channel', { type: 'string', demandOption: true }),
  handler: renewHandler,
};

const statusCommand: CommandModule<object, Common> = {
  command: 'status',
  describe: 'Show every channel: its release, rollout share now, pin, barriers, revocations, serial and expiry',
  builder: (y) => common(y),
  handler: statusHandler,
};

const command: CommandModule<object, object> = {
  command: 'channel <command>',
  describe: 'Fleet operations on release channels (signed, expiring metadata in the repository)',
  builder: (y: Argv) =>
    y
      .command(promoteCommand)
      .command(pinCommand)
      .command(revokeCommand)
      .command(renewCommand)
      .command(statusCommand)
      .demandCommand(1, 'Name a channel command: see the list above.'),
  handler: () => undefined,
};

export default command;
