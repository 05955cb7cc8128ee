// Stopping and removing containers. Signals go only to processes this runtime started, and
// only after their identity (pid and start time, recorded at start) is checked again.
import { setTimeout as sleep } from 'node:timers/promises';
import { CairnError } from '../errors.js';
import { containerStatus, isAlive, readState, removeContainerDirs, removeLeftCgroups, type ContainerStatus, type ProcessRef } from './state.js';

const POLL_MS = 100;
/** How long the supervisor gets to reap a killed container and write its exit line. */
const REAP_MS = 10_000;

async function signal(ref: ProcessRef | undefined, sig: NodeJS.Signals): Promise<boolean> {
  if (!(await isAlive(ref))) return false;
  try {
    process.kill(ref!.pid, sig);
    return true;
  } catch {
    return false; // it ended between the check and the signal
  }
}

async function waitUntilStopped(name: string, ms: number): Promise<ContainerStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const status = await containerStatus(await readState(name));
    if (status.status !== 'running' || Date.now() >= deadline) return status;
    await sleep(POLL_MS);
  }
}

/**
 * SIGTERM to the command (through the supervisor), then, after `timeoutSeconds`, SIGKILL to the
 * container's init, which ends every process in its PID namespace.
 */
export async function stopContainer(name: string, timeoutSeconds: number): Promise<ContainerStatus> {
  const current = await containerStatus(await readState(name));
  if (current.status !== 'running') return current;
  await signal(current.state.supervisor, 'SIGTERM');
  let status = await waitUntilStopped(name, timeoutSeconds * 1000);
  if (status.status !== 'running') return status;
  await signal(current.state.init, 'SIGKILL');
  status = await waitUntilStopped(name, REAP_MS);
  if (status.status === 'running') {
    throw new CairnError(
      `container ${name} is still running ${REAP_MS / 1000} s after SIGKILL`,
      `its supervisor is pid ${current.state.supervisor!.pid}; look at it with ps`,
    );
  }
  return status;
}

export async function removeContainer(name: string, force: boolean): Promise<void> {
  const status = await containerStatus(await readState(name));
  if (status.status === 'running') {
    if (!force) throw new CairnError(`container ${name} is running`, `stop it first ("cairn stop ${name}") or use "cairn rm --force ${name}"`);
    await stopContainer(name, 0);
  }
  if (status.status === 'dead') await removeLeftCgroups(status.state);
  await removeContainerDirs(name);
}
