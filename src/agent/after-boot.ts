// What the agent does once a boot has come up (`cairn agent check`, run by a unit after the
// boot reached its target):
// - A boot of a new entry (one still carrying a boot counter) is on trial: the health checks
//   decide. Passing, the entry is blessed (its counter dropped from the name) and the update
//   transaction ends; failing, the host reboots, systemd-boot counts the try, and when the
//   tries run out it boots the previous version.
// - Back on the previous version with the new entry out of tries (or gone), the release is
//   recorded as bad on this host and never installed again; its entry is removed.
import type { BootEntry } from './boot-entries.js';
import { blessEntry, bootedEntry, entriesOf, listEntries, removeEntry } from './boot-entries.js';
import { cutPoint } from './cut-points.js';
import type { HealthConfig, HealthProbes, HealthReport } from './health.js';
import { runHealthChecks } from './health.js';
import { loadState, markBad, saveState } from './state.js';
import type { HostContext, Log } from './update.js';

export type AfterBootOutcome =
  | { status: 'blessed'; version: string; report: HealthReport }
  | { status: 'unhealthy'; version: string; report: HealthReport }
  | { status: 'fell-back'; bad: string; version: string }
  | { status: 'nothing-to-do'; version: string };

export interface AfterBootOptions {
  host: HostContext;
  stateDir: string;
  health: HealthConfig;
  probes?: HealthProbes;
  log: Log;
  /** The LoaderEntrySelected variable file (tests). */
  efivar?: string;
  now?: () => Date;
}

export async function afterBoot(o: AfterBootOptions): Promise<AfterBootOutcome> {
  const now = () => o.now?.() ?? new Date();
  let { state } = await loadState(o.stateDir);
  const { host } = o;
  const tx = state.transaction;
  if (tx && tx.version !== host.version && ['installed'].includes(tx.step)) {
    const entries = entriesOf(await listEntries(host.esp), host.name, tx.version);
    const live = entries.filter((e: BootEntry) => e.status !== 'exhausted');
    if (live.length === 0) {
      // The new release ran out of tries (or its entry vanished): it failed here.
      state = markBad(state, tx.version, `${tx.version} did not come up healthy within its boot tries; back on ${host.version}`, now());
      state = {
        ...state,
        transaction: null,
        lastError: { message: `${tx.version} failed to boot healthy and was rolled back`, step: tx.step, at: now().toISOString() },
      };
      cutPoint('state bad');
      await saveState(o.stateDir, state);
      for (const e of entries) {
        cutPoint(`esp remove ${e.file}`);
        await removeEntry(e);
      }
      o.log('rolled-back', { bad: tx.version, running: host.version });
      return { status: 'fell-back', bad: tx.version, version: host.version };
    }
  }
  const booted = await bootedEntry(host.esp, { efivar: o.efivar, usrHash: host.usrHash });
  if (!booted || booted.entry.triesLeft === null) return { status: 'nothing-to-do', version: host.version };
  const report = await runHealthChecks(o.health, o.probes);
  o.log('health', { version: host.version, ok: report.ok, checks: report.checks.map((c) => ({ name: c.name, status: c.status })) });
  if (!report.ok) return { status: 'unhealthy', version: host.version, report };
  cutPoint(`esp bless ${booted.entry.file}`);
  await blessEntry(booted.entry);
  if (state.transaction?.version === host.version) {
    state = { ...state, transaction: null, lastError: null };
    cutPoint('state blessed');
    await saveState(o.stateDir, state);
  }
  o.log('blessed', { version: host.version });
  return { status: 'blessed', version: host.version, report };
}
