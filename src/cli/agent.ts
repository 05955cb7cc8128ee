import { execFile } from 'node:child_process';
import { rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Argv, CommandModule } from 'yargs';
import { afterBoot } from '../agent/after-boot.js';
import { listEntries } from '../agent/boot-entries.js';
import { DEFAULT_AGENT_CONFIG, loadAgentConfig, type AgentConfig } from '../agent/config.js';
import { FleetLockClient, fleetLockId } from '../agent/fleetlock.js';
import { detectHost } from '../agent/host.js';
import { decideReboot } from '../agent/reboot-strategy.js';
import { identifySlots } from '../agent/slots.js';
import { loadState } from '../agent/state.js';
import { UpdateTransaction, type HostContext, type Log } from '../agent/update.js';
import { readGpt } from '../image/gpt.js';
import { loadKeyring } from '../trust/keyring.js';
import { jsonOption } from './options.js';

interface Common {
  config: string;
  disk?: string;
  esp?: string;
}

const REBOOT_REQUEST = 'reboot-requested';

/** One JSON object per line on stderr: journald keeps the agent's output, tools can parse it. */
const log: Log = (event, fields = {}) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n');
};

const common = <T>(y: Argv<T>) =>
  y
    .option('config', { type: 'string', default: DEFAULT_AGENT_CONFIG, describe: 'Agent configuration (YAML; docs/agent.md)' })
    .option('disk', { type: 'string', describe: 'Boot disk (default: the disk holding the running /usr)' })
    .option('esp', { type: 'string', describe: 'ESP mount point (default: the configuration, else /efi or /boot/efi)' });

async function context(args: Common): Promise<{ config: AgentConfig; host: HostContext }> {
  const config = await loadAgentConfig(args.config);
  const host = await detectHost({ disk: args.disk, esp: args.esp ?? config.esp });
  return { config, host };
}

/** Reboots the machine: systemctl, or CAIRN_REBOOT_COMMAND (tests). */
async function reboot(reason: string): Promise<void> {
  log('reboot', { reason });
  const command = (process.env.CAIRN_REBOOT_COMMAND ?? 'systemctl reboot').split(' ');
  await promisify(execFile)(command[0]!, command.slice(1));
}

async function rebootWhenDue(config: AgentConfig, host: HostContext, once: boolean): Promise<boolean> {
  for (;;) {
    const requested = await stat(join(config.stateDir, REBOOT_REQUEST)).then(() => true, () => false);
    const decision = decideReboot(config.strategy, new Date(), requested);
    if (decision.action === 'reboot') {
      await rm(join(config.stateDir, REBOOT_REQUEST), { force: true });
      await reboot(decision.reason);
      return true;
    }
    if (decision.action === 'take-lock') {
      const client = new FleetLockClient({ url: decision.url, group: decision.group, id: await fleetLockId(), onRetry: (n, problem, delayMs) => log('fleetlock-wait', { attempt: n, problem, delayMs }) });
      await client.preReboot();
      await reboot(`FleetLock granted a slot in ${decision.group}`);
      return true;
    }
    log('reboot-pending', { reason: decision.reason, version: host.version });
    if (once) return false;
    await sleep(decision.action === 'wait-until' ? Math.max(1000, Math.min(decision.at.getTime() - Date.now(), 600_000)) : 30_000);
  }
}

interface RunArgs extends Common {
  once: boolean;
}

const run: CommandModule<object, RunArgs> = {
  command: 'run',
  describe: 'The update loop: poll the channel, install a new release into the inactive slot, reboot as the strategy says',
  builder: (y) => common(y).option('once', { type: 'boolean', default: false, describe: 'Check and install once, then exit (no reboot wait loop)' }),
  handler: async (args) => {
    const { config, host } = await context(args);
    log('agent-start', { image: host.name, version: host.version, repository: config.repository, source: config.source, strategy: config.strategy.type });
    const keys = (await Promise.all(config.keys.map((k) => loadKeyring(k)))).flat();
    for (;;) {
      try {
        const outcome = await new UpdateTransaction({ host, config, keys, log }).run();
        log('outcome', outcome);
        if (outcome.status === 'installed' && (await rebootWhenDue(config, host, args.once))) return;
      } catch (err) {
        log('error', { message: (err as Error).message });
        if (args.once) throw err;
      }
      if (args.once) return;
      await sleep(config.pollInterval * 1000);
    }
  },
};

const check: CommandModule<object, Common> = {
  command: 'check',
  describe: 'After boot: run the health checks; bless a new boot that passes, reboot one that fails; record a release that ran out of tries as bad',
  builder: (y) => common(y),
  handler: async (args) => {
    const { config, host } = await context(args);
    log('check-start', { image: host.name, version: host.version });
    const outcome = await afterBoot({
      host,
      stateDir: config.stateDir,
      health: config.health,
      log,
      probes: {
        containerState: async (name) => {
          const { stdout } = await promisify(execFile)(process.execPath, [process.argv[1]!, 'ps', '--json']).catch(() => ({ stdout: '[]' }));
          const found = (JSON.parse(stdout) as { name: string; status: string }[]).find((c) => c.name === name);
          return found?.status;
        },
      },
    });
    log('after-boot', { status: outcome.status, version: outcome.version });
    if (outcome.status === 'unhealthy') await reboot(`health checks failed on ${outcome.version}`);
    if (outcome.status === 'blessed' && config.strategy.type === 'fleetlock') {
      await new FleetLockClient({ url: config.strategy.url, group: config.strategy.group, id: await fleetLockId() }).steadyState();
    }
  },
};

interface StatusArgs extends Common {
  json: boolean;
}

const status: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'The running and the other slot, their versions, the update in progress and the last error',
  builder: (y) => common(y).option('json', jsonOption),
  handler: async (args) => {
    const { config, host } = await context(args);
    const { state } = await loadState(config.stateDir);
    const slots = identifySlots(await readGpt(host.disk), host.usrHash, host.disk);
    const entries = await listEntries(host.esp);
    const report = {
      image: host.name,
      running: { slot: slots.running.name, version: host.version, usrHash: host.usrHash },
      other: { slot: slots.inactive.name, usrUuid: slots.inactive.usr.uuid },
      entries: entries.map((e) => ({ file: e.file, version: e.version, status: e.status, triesLeft: e.triesLeft })),
      transaction: state.transaction,
      bad: state.bad,
      lastError: state.lastError,
      source: config.source,
      strategy: config.strategy.type,
    };
    if (args.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return;
    }
    process.stdout.write(`running  slot ${report.running.slot}: ${host.name} ${host.version}\nother    slot ${report.other.slot}\n`);
    for (const e of report.entries) process.stdout.write(`entry    ${e.file} (${e.status})\n`);
    process.stdout.write(`pending  ${state.transaction ? `${state.transaction.version} at step ${state.transaction.step}` : 'nothing'}\n`);
    if (state.bad.length) process.stdout.write(`bad      ${state.bad.map((b) => b.version).join(', ')}\n`);
    if (state.lastError) process.stdout.write(`error    ${state.lastError.message}\n`);
  },
};

const rebootCommand: CommandModule<object, Common> = {
  command: 'reboot',
  describe: 'Boot a staged update now (the operator\'s command for the download-only strategy)',
  builder: (y) => common(y),
  handler: async (args) => {
    const config = await loadAgentConfig(args.config);
    const { state } = await loadState(config.stateDir);
    if (state.transaction?.step !== 'installed') {
      process.stdout.write(`nothing is staged${state.transaction ? ` (${state.transaction.version} is at step ${state.transaction.step})` : ''}\n`);
      return;
    }
    await writeFile(join(config.stateDir, REBOOT_REQUEST), new Date().toISOString());
    await reboot(`the operator asked to boot ${state.transaction.version}`);
  },
};

const command: CommandModule<object, object> = {
  command: 'agent <command>',
  describe: 'The on-host update agent (runs on cairn images; configured by /etc/cairn/agent.yaml)',
  builder: (y: Argv) => y.command(run).command(check).command(status).command(rebootCommand).demandCommand(1, 'Name an agent command: see the list above.'),
  handler: () => undefined,
};

export default command;
