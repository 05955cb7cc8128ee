// HTTP for everything cairn downloads (Debian archives, update repositories), with undici. Every
// response is hostile until checked: bodies are read with a ceiling, a server that stalls is cut
// off, redirects are followed only a few times, and only network trouble is retried.
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import { CairnError } from './errors.js';

export interface HttpOptions {
  /** A response that sends nothing for this long is abandoned (default 60 s). */
  stallTimeoutMs?: number;
  /** Tries per request when the network fails (default 3). */
  attempts?: number;
  /** Hint for a 404 (what the user should check). */
  notFoundHint?: string;
}

const DEFAULT_STALL_MS = 60_000;
const DEFAULT_ATTEMPTS = 3;
const RETRY_DELAY_MS = 300;
const MAX_REDIRECTIONS = 5;

const dispatchers = new Map<number, Dispatcher>();

/** The shared dispatcher for a stall timeout: honours http_proxy/https_proxy/no_proxy as apt does; mirrors may redirect (http → https, CDN). */
export function dispatcherFor(opts: HttpOptions = {}): Dispatcher {
  const stall = opts.stallTimeoutMs ?? DEFAULT_STALL_MS;
  let d = dispatchers.get(stall);
  if (!d) {
    d = new EnvHttpProxyAgent({
      connect: { timeout: Math.min(30_000, stall) },
      headersTimeout: Math.min(30_000, stall),
      bodyTimeout: stall,
    }).compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }));
    dispatchers.set(stall, d);
  }
  return d;
}

/** A failure worth another attempt: the network, not the content, went wrong. */
export class TransientError extends Error {}

function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

export function statusError(url: string, status: number, opts: HttpOptions = {}): Error {
  const message = `${url}: HTTP ${status}`;
  // The redirect interceptor hands back the last 3xx once it has followed its limit.
  if (status >= 300 && status < 400) return new CairnError(`${message} after ${MAX_REDIRECTIONS} redirects: a redirect loop`, "fix the server's redirects");
  if (isTransientStatus(status)) return new TransientError(message);
  return new CairnError(message, status === 404 ? opts.notFoundHint : undefined);
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') return `the server stalled (${err.message})`;
  return err.message;
}

/** Runs `attempt` until it succeeds, throws a CairnError (content trouble), or runs out of tries. */
export async function withRetries<T>(url: string, attempt: () => Promise<T>, opts: HttpOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof CairnError) throw err;
      // undici detects a loop before the limit; asking again would loop again.
      if (/redirect loop/i.test((err as Error).message))
        throw new CairnError(`${url}: a redirect loop (${(err as Error).message.split('.')[0]})`, "fix the server's redirects");
      if (n >= attempts) {
        throw new CairnError(`${url}: download failed after ${n} attempt${n === 1 ? '' : 's'}: ${describe(err as Error)}`, 'check the network and the server');
      }
      await sleep(RETRY_DELAY_MS * n);
    }
  }
}

/**
 * GETs a document whole, refusing to read more than `maxBytes`: a hostile or broken server must
 * not be able to fill memory with endless data.
 */
export async function fetchBytes(url: string, maxBytes: number, opts: HttpOptions = {}): Promise<Buffer> {
  return withRetries(
    url,
    async () => {
      const res = await request(url, { dispatcher: dispatcherFor(opts) });
      if (res.statusCode !== 200) {
        await res.body.dump().catch(() => undefined);
        throw statusError(url, res.statusCode, opts);
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > maxBytes) {
        res.body.destroy();
        throw new CairnError(`${url}: declares ${declared} bytes, more than the ${maxBytes} cairn accepts for it`, 'the server is broken or hostile');
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body) {
        total += (chunk as Buffer).length;
        if (total > maxBytes) {
          res.body.destroy();
          throw new CairnError(`${url}: larger than the ${maxBytes} bytes cairn accepts for it`, 'the server is broken or hostile');
        }
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks);
    },
    opts,
  );
}
