// The FleetLock client (the protocol of Fedora CoreOS's Zincati, served by airlock and others):
// before rebooting into an update the host takes a slot in its group's semaphore with
// POST {url}/v1/pre-reboot, and gives it back with POST {url}/v1/steady-state once the new boot
// is healthy. Both are idempotent on the server, so a client that restarts just asks again.
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, type Dispatcher } from 'undici';
import { CairnError } from '../errors.js';

/**
 * cairn's application id for identifiers derived from /etc/machine-id (as Zincati uses
 * de35106b6ec24688b63afddaa156679b): a lock server sees a stable id per host, but not the
 * machine id itself, which other software may treat as a secret.
 */
export const CAIRN_APP_ID = '8d3ca2db59274bf1b405afab6070da02';

const ID128 = /^[0-9a-f]{32}$/;

/**
 * systemd's sd_id128_get_machine_app_specific(): HMAC-SHA256 keyed with the machine id over the
 * application id, truncated to 128 bits and marked as a version 4 UUID, as 32 hex digits.
 */
export function appSpecificId(machineId: string, appId = CAIRN_APP_ID): string {
  const key = machineId.trim().toLowerCase().replace(/-/g, '');
  const app = appId.toLowerCase().replace(/-/g, '');
  if (!ID128.test(key))
    throw new CairnError(
      `machine id ${JSON.stringify(machineId.trim().slice(0, 40))} is not 32 hex digits`,
      'run systemd-machine-id-setup, or fix /etc/machine-id',
    );
  if (!ID128.test(app)) throw new CairnError(`application id ${JSON.stringify(appId)} is not 32 hex digits`);
  const id = createHmac('sha256', Buffer.from(key, 'hex')).update(Buffer.from(app, 'hex')).digest().subarray(0, 16);
  id[6] = (id[6]! & 0x0f) | 0x40;
  id[8] = (id[8]! & 0x3f) | 0x80;
  return id.toString('hex');
}

/** This host's FleetLock id, derived from its machine id. */
export async function fleetLockId(machineIdPath = '/etc/machine-id'): Promise<string> {
  let text: string;
  try {
    text = await readFile(machineIdPath, 'utf8');
  } catch (err) {
    throw new CairnError(
      `cannot read ${machineIdPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'FleetLock needs a machine id; systemd writes it on first boot',
    );
  }
  return appSpecificId(text);
}

export type LockResult =
  | { ok: true }
  /** The server answered but refused: `kind` is machine-readable (failed_lock, …), `value` says why. */
  | { ok: false; status: number; kind: string; value: string };

export interface FleetLockOptions {
  /** Base URL of the lock server. */
  url: string;
  /** Reboot group, `^[a-zA-Z0-9.-]+$`. */
  group: string;
  id: string;
  dispatcher?: Dispatcher;
  /** First pause after a refusal or an error; doubles up to maxDelayMs, each with ±20 % jitter. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Per request, for the headers and for the body. */
  requestTimeoutMs?: number;
  /** Told about each failed attempt before the pause, for the agent's log. */
  onRetry?: (attempt: number, problem: string, delayMs: number) => void;
}

const GROUP = /^[a-zA-Z0-9.-]+$/;
/** Error bodies are a small JSON object; anything longer is cut. */
const MAX_BODY = 64 * 1024;

export class FleetLockClient {
  private readonly base: string;

  constructor(private readonly options: FleetLockOptions) {
    if (!GROUP.test(options.group)) throw new CairnError(`FleetLock group ${JSON.stringify(options.group)} is not of letters, digits, . and -`);
    if (options.id === '') throw new CairnError('FleetLock id is empty');
    this.base = options.url.endsWith('/') ? options.url : `${options.url}/`;
  }

  /** One attempt to take a reboot slot. Throws a CairnError when the server cannot be reached. */
  tryPreReboot(): Promise<LockResult> {
    return this.post('v1/pre-reboot');
  }

  /** One attempt to give the slot back (a no-op on the server when this id holds none). */
  trySteadyState(): Promise<LockResult> {
    return this.post('v1/steady-state');
  }

  /** Takes a reboot slot, asking again with backoff until the server grants one or `signal` aborts. */
  preReboot(signal?: AbortSignal): Promise<void> {
    return this.retry(() => this.tryPreReboot(), signal);
  }

  /** Releases the slot, asking again with backoff until the server confirms or `signal` aborts. */
  steadyState(signal?: AbortSignal): Promise<void> {
    return this.retry(() => this.trySteadyState(), signal);
  }

  private async retry(attempt: () => Promise<LockResult>, signal?: AbortSignal): Promise<void> {
    const initial = this.options.initialDelayMs ?? 5_000;
    const max = this.options.maxDelayMs ?? 300_000;
    for (let n = 1; ; n++) {
      signal?.throwIfAborted();
      let problem: string;
      try {
        const result = await attempt();
        if (result.ok) return;
        problem = `${result.kind}: ${result.value}`;
      } catch (err) {
        if (!(err instanceof CairnError)) throw err;
        problem = err.message;
      }
      const delay = Math.round(Math.min(max, initial * 2 ** Math.min(n - 1, 30)) * (0.8 + Math.random() * 0.4));
      this.options.onRetry?.(n, problem, delay);
      await sleep(delay, undefined, { signal });
    }
  }

  private async post(path: string): Promise<LockResult> {
    const url = new URL(path, this.base);
    const timeout = this.options.requestTimeoutMs ?? 30_000;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'POST',
        // The header proves the request was meant for a lock server, not replayed by a redirect.
        headers: { 'fleet-lock-protocol': 'true', 'content-type': 'application/json' },
        body: JSON.stringify({ client_params: { id: this.options.id, group: this.options.group } }),
        dispatcher: this.options.dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (err) {
      throw new CairnError(
        `FleetLock server ${url.href} cannot be reached: ${(err as Error).message}`,
        'check strategy.url in the agent configuration and that the lock server runs',
      );
    }
    const body = await readLimited(response.body);
    if (response.statusCode === 200) return { ok: true };
    return { ok: false, status: response.statusCode, ...errorOf(body, response.statusCode) };
  }
}

async function readLimited(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    if (size < MAX_BODY) chunks.push(buffer.subarray(0, MAX_BODY - size));
    size += buffer.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The protocol's `{"kind": …, "value": …}`, or what can be said about a body that is not one. */
function errorOf(body: string, status: number): { kind: string; value: string } {
  const clip = (s: string): string => (s.length > 1024 ? `${s.slice(0, 1021)}...` : s);
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed !== null && typeof parsed === 'object') {
      const { kind, value } = parsed as Record<string, unknown>;
      if (typeof kind === 'string' && typeof value === 'string') return { kind: clip(kind), value: clip(value) };
    }
  } catch {
    // Not JSON: described below by status and text.
  }
  return { kind: 'http_error', value: clip(`HTTP ${status}${body.trim() ? `: ${body.trim()}` : ''}`) };
}
