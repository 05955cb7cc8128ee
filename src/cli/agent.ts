import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Argv, CommandModule } from 'yargs';
import { agentStatus, checkBoot, formatAgentStatus, rebootIntoStaged, runAgent, type AgentLocation } from '../agent/commands.js';
import { DEFAULT_AGENT_CONFIG } from '../agent/config.js';
import { OPTIONS, output } from './options.js';

const located = <T>(y: Argv<T>) =>
  y
    .option('config', { type: 'string', default: DEFAULT_AGENT_CONFIG, describe: 'Agent configuration (YAML; docs/agent.md)' })
    .option('disk', { type: 'string', describe: 'Boot disk (default: the disk holding the running /usr)' })
    .option('esp', { type: 'string', describe: 'ESP mount point (default: the configuration, else /efi or /boot/efi)' });

/** A container's status as this host's runtime reports it (`cairn ps --json`). */
async function containerState(name: string): Promise<string | undefined> {
  const { stdout } = await promisify(execFile)(process.execPath, [process.argv[1]!, 'ps', '--json']).catch(() => ({ stdout: '[]' }));
  return (JSON.parse(stdout) as { name: string; status: string }[]).find((c) => c.name === name)?.status;
}

async function runHandler(args: AgentLocation & { once: boolean }): Promise<void> {
  await runAgent(args, args.once);
}

async function checkHandler(args: AgentLocation): Promise<void> {
  await checkBoot(args, containerState);
}

async function statusHandler(args: AgentLocation & { json: boolean }): Promise<void> {
  output(args.json, await agentStatus(args), formatAgentStatus);
}

async function rebootHandler(args: AgentLocation): Promise<void> {
  const refusal = await rebootIntoStaged(args.config);
  if (refusal) process.stdout.write(`${refusal}\n`);
}

const run: CommandModule<object, AgentLocation & { once: boolean }> = {
  command: 'run',
  describe: 'The update loop: poll the channel, install a new release into the inactive slot, reboot as the strategy says',
  builder: (y) => located(y).option('once', { type: 'boolean', default: false, describe: 'Check and install once, then exit (no reboot wait loop)' }),
  handler: runHandler,
};

const check: CommandModule<object, AgentLocation> = {
  command: 'check',
  describe: 'After boot: run the health checks; bless a new boot that passes, reboot one that fails; record a release that ran out of tries as bad',
  builder: (y) => located(y),
  handler: checkHandler,
};

const status: CommandModule<object, AgentLocation & { json: boolean }> = {
  command: 'status',
  describe: 'The running and the other slot, their versions, the update in progress and the last error',
  builder: (y) => located(y).option('json', OPTIONS.json),
  handler: statusHandler,
};

const rebootCommand: CommandModule<object, AgentLocation> = {
  command: 'reboot',
  describe: "Boot a staged update now (the operator's command for the download-only strategy)",
  builder: (y) => located(y),
  handler: rebootHandler,
};

const command: CommandModule<object, object> = {
  command: 'agent <command>',
  describe: 'The on-host update agent (runs on cairn images; configured by /etc/cairn/agent.yaml)',
  builder: (y: Argv) => y.command(run).command(check).command(status).command(rebootCommand).demandCommand(1, 'Name an agent command: see the list above.'),
  handler: () => undefined,
};

export default command;
