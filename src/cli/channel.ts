import type { Argv, CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import type { ChannelDoc } from '../release/channel.js';
import { channelStatus, DEFAULT_EXPIRY_SECONDS, listChannels, pin, promote, renew, resolveName, revoke, type ChannelWrite } from '../release/channel-ops.js';
import { parseDuration, parseTime } from '../document/units.js';
import { loadSigningKey } from '../trust/signing-key.js';
import { jsonOption } from './options.js';

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
    .option('repo', { type: 'string', demandOption: true, describe: 'Repository folder' })
    .option('name', { type: 'string', describe: 'Image name (needed only when the repository holds several)' })
    .option('json', jsonOption);

const signed = <T>(y: Argv<T>) =>
  common(y)
    .option('sign-key', { type: 'string', demandOption: true, describe: 'Private key that signs the channel (a repository key hosts trust)' })
    .option('expires', { type: 'string', default: `${DEFAULT_EXPIRY_SECONDS / 86400}d`, describe: 'How long the signed channel stays valid; hosts refuse it after that (renew before)' });

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
  const status = docs.map((d) => channelStatus(d, now));
  if (json) {
    process.stdout.write(JSON.stringify(status, null, 2) + '\n');
    return;
  }
  for (const s of status) {
    const rollout = s.rolloutPercent < 100 ? ` rolling out: ${s.rolloutPercent.toFixed(1)}% of hosts` : '';
    process.stdout.write(
      `${s.channel}: ${s.release ?? '(nothing)'}${s.pinned ? ' (pinned)' : ''}${rollout}; serial ${s.serial}, ${s.expired ? 'EXPIRED' : 'expires'} ${s.expires}` +
        `${s.barriers.length ? `; barriers ${s.barriers.join(', ')}` : ''}${s.revoked.length ? `; revoked ${s.revoked.join(', ')}` : ''}\n`,
    );
  }
}

interface PromoteArgs extends Signed {
  version: string;
  to: string;
  rollout: number;
  start?: string;
  duration?: string;
  barrier: boolean;
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
      .option('barrier', { type: 'boolean', default: false, describe: 'Every older host must install this release before any later one (key rotation, format changes)' })
      .example('$0 channel promote 0.2.0 --to stable --rollout 10 --duration 2d --repo repo --sign-key keys/release.asc', '10% of hosts now, all of them in two days'),
  handler: async (args) => {
    if (!(args.rollout >= 0 && args.rollout <= 100)) throw new CairnError(`--rollout ${args.rollout}: a percentage must be 0..100`);
    const phased = args.rollout < 100 || args.duration !== undefined || args.start !== undefined;
    const rollout = phased
      ? {
          start: (args.start ? parseTime(args.start, '--start') : new Date()).toISOString(),
          startPercent: args.rollout,
          durationSeconds: args.duration ? parseDuration(args.duration, '--duration') : 0,
        }
      : undefined;
    if (rollout && rollout.startPercent < 100 && rollout.durationSeconds === 0) {
      throw new CairnError(`--rollout ${args.rollout} without --duration would never reach every host`, 'add --duration, e.g. --duration 2d');
    }
    const doc = await promote({ ...(await writer(args)), version: args.version, channel: args.to, rollout, barrier: args.barrier });
    printChannels([doc], args.json);
  },
};

interface PinArgs extends Signed {
  channel: string;
  version?: string;
  unpin: boolean;
}

const pinCommand: CommandModule<object, PinArgs> = {
  command: 'pin <channel> [version]',
  describe: 'Hold a channel at one version, even an older one (hosts follow it back); --unpin releases it',
  builder: (y) =>
    signed(y)
      .positional('channel', { type: 'string', demandOption: true })
      .positional('version', { type: 'string' })
      .option('unpin', { type: 'boolean', default: false, describe: 'Let the channel be promoted again' })
      .example('$0 channel pin db-hosts 0.1.4 --repo repo --sign-key keys/release.asc', 'hosts configured with channel db-hosts stay on (or go back to) 0.1.4'),
  handler: async (args) => {
    if (!args.unpin && !args.version) throw new CairnError('name the version to pin the channel to, or pass --unpin');
    const doc = await pin({ ...(await writer(args)), channel: args.channel, version: args.version, unpin: args.unpin });
    printChannels([doc], args.json);
  },
};

interface RevokeArgs extends Signed {
  version: string;
}

const revokeCommand: CommandModule<object, RevokeArgs> = {
  command: 'revoke <version>',
  describe: 'Withdraw a release from every channel: hosts that have not taken it never will; hosts on it move on at the next release',
  builder: (y) => signed(y).positional('version', { type: 'string', demandOption: true }),
  handler: async (args) => {
    printChannels(await revoke({ ...(await writer(args)), version: args.version }), args.json);
  },
};

interface RenewArgs extends Signed {
  channel: string;
}

const renewCommand: CommandModule<object, RenewArgs> = {
  command: 'renew <channel>',
  describe: 'Sign a channel again with a new expiry, unchanged otherwise (run it from a timer well before --expires runs out)',
  builder: (y) => signed(y).positional('channel', { type: 'string', demandOption: true }),
  handler: async (args) => {
    printChannels([await renew(await writer(args), args.channel)], args.json);
  },
};

const statusCommand: CommandModule<object, Common> = {
  command: 'status',
  describe: 'Show every channel: its release, rollout share now, pin, barriers, revocations, serial and expiry',
  builder: (y) => common(y),
  handler: async (args) => {
    const name = await resolveName(args.repo, args.name);
    printChannels(await listChannels(args.repo, name), args.json);
  },
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
