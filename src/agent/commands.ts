// What `cairn agent run|check|status|reboot` do on a host: the update loop, the boot assessment,
// the status report and the operator's reboot into a staged update. The CLI only parses.
import { execFile } from 'node:child_process';
import { rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { readGpt } from '../image/gpt.js';
import { loadKeyring } from '../trust/keyring.js';
import { afterBoot, type AfterBootOutcome } from './after-boot.js';
import { listEntries, type BootEntry } from './boot-entries.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { eventLog as log } from './event-log.js';
import { FleetLockClient, fleetLockId } from './fleetlock.js';
import { detectHost } from './host.js';
import { decideReboot } from './reboot-strategy.js';
import { identifySlots } from './slots.js';
import { loadState, type AgentState } from './state.js';
import { UpdateTransaction, type HostContext } from './update.js';
import { sleepFor } from '../timers.js';

/** Where the agent's configuration is and, for unusual layouts and tests, the boot disk and ESP. */
export interface AgentLocation {
  config: string;
  disk?: string;
  esp?: string;
}

const REBOOT_REQUEST = 'reboot-requested';

async function context(where: AgentLocation): Promise<{ config: AgentConfig; host: HostContext }> {
  const config = await loadAgentConfig(where.config);
  const host = await detectHost({ disk: where.disk, esp: where.esp ?? config.esp });
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
    const requested = await stat(join(config.stateDir, REBOOT_REQUEST)).then(
      () => true,
      () => false,
    );
    const decision = decideReboot(config.strategy, new Date(), requested);
    if (decision.action === 'reboot') {
      await rm(join(config.stateDir, REBOOT_REQUEST), { force: true });
      await reboot(decision.reason);
      return true;
    }
    if (decision.action === 'take-lock') {
      const client = new FleetLockClient({
        url: decision.url,
        group: decision.group,
        id: await fleetLockId(),
        onRetry: (n, problem, delayMs) => log('fleetlock-wait', { attempt: n, problem, delayMs }),
      });
      await client.preReboot();
      await reboot(`FleetLock granted a slot in ${decision.group}`);
      return true;
    }
    log('reboot-pending', { reason: decision.reason, version: host.version });
    if (once) return false;
    await sleep(decision.action === 'wait-until' ? Math.max(1000, Math.min(decision.at.getTime() - Date.now(), 600_000)) : 30_000);
  }
}

/** The update loop: poll the channel, install into the inactive slot, reboot as the strategy says. */
export async function runAgent(where: AgentLocation, once: boolean): Promise<void> {
  const { config, host } = await context(where);
  log('agent-start', { image: host.name, version: host.version, repository: config.repository, source: config.source, strategy: config.strategy.type });
  const keys = (await Promise.all(config.keys.map((k) => loadKeyring(k)))).flat();
  for (;;) {
    try {
      const outcome = await new UpdateTransaction({ host, config, keys, log }).run();
      log('outcome', outcome);
      if (outcome.status === 'installed' && (await rebootWhenDue(config, host, once))) return;
    } catch (err) {
      log('error', { message: (err as Error).message });
      if (once) throw err;
    }
    if (once) return;
    await sleepFor(config.pollInterval * 1000);
  }
}

/**
 * After boot: the health checks; bless a new boot that passes, reboot one that fails. `containerState`
 * asks the runtime (`cairn ps`) for a container's status.
 */
export async function checkBoot(where: AgentLocation, containerState: (name: string) => Promise<string | undefined>): Promise<AfterBootOutcome> {
  const { config, host } = await context(where);
  log('check-start', { image: host.name, version: host.version });
  const outcome = await afterBoot({ host, stateDir: config.stateDir, health: config.health, log, probes: { containerState } });
  log('after-boot', { status: outcome.status, version: outcome.version });
  if (outcome.status === 'unhealthy') await reboot(`health checks failed on ${outcome.version}`);
  if (outcome.status === 'blessed' && config.strategy.type === 'fleetlock') {
    await new FleetLockClient({ url: config.strategy.url, group: config.strategy.group, id: await fleetLockId() }).steadyState();
  }
  return outcome;
}

export interface AgentStatus {
  image: string;
  running: { slot: string; version: string; usrHash: string };
  other: { slot: string; usrUuid: string };
  entries: Pick<BootEntry, 'file' | 'version' | 'status' | 'triesLeft'>[];
  transaction: AgentState['transaction'];
  bad: AgentState['bad'];
  lastError: AgentState['lastError'];
  source: AgentConfig['source'];
  strategy: string;
}

export async function agentStatus(where: AgentLocation): Promise<AgentStatus> {
  const { config, host } = await context(where);
  const { state } = await loadState(config.stateDir);
  const slots = identifySlots(await readGpt(host.disk), host.usrHash, host.disk);
  const entries = await listEntries(host.esp);
  return {
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
}

export function formatAgentStatus(s: AgentStatus): string {
  const lines = [`running  slot ${s.running.slot}: ${s.image} ${s.running.version}`, `other    slot ${s.other.slot}`];
  for (const e of s.entries) lines.push(`entry    ${e.file} (${e.status})`);
  lines.push(`pending  ${s.transaction ? `${s.transaction.version} at step ${s.transaction.step}` : 'nothing'}`);
  if (s.bad.length) lines.push(`bad      ${s.bad.map((b) => b.version).join(', ')}`);
  if (s.lastError) lines.push(`error    ${s.lastError.message}`);
  return lines.join('\n') + '\n';
}

/** Boots a staged update now; says why not when nothing is staged. */
export async function rebootIntoStaged(configPath: string): Promise<string | null> {
  const config = await loadAgentConfig(configPath);
  const { state } = await loadState(config.stateDir);
  if (state.transaction?.step !== 'installed') {
    return `nothing is staged${state.transaction ? ` (${state.transaction.version} is at step ${state.transaction.step})` : ''}`;
  }
  await writeFile(join(config.stateDir, REBOOT_REQUEST), new Date().toISOString());
  await reboot(`the operator asked to boot ${state.transaction.version}`);
  return null;
}
