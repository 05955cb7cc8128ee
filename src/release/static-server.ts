// `cairn serve`: the repository over HTTP for development and tests. Production serves the same
// tree from any static server or object store; this one does only what hosts need: GET and HEAD
// of files below the root, single byte ranges for resuming, nothing outside the root and no
// dot-files (publish's temporary folders start with a dot).
import { once } from 'node:events';
import { open, realpath } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve, sep } from 'node:path';

export interface StaticReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const empty = (status: number, headers: Record<string, string> = {}): StaticReply => ({
  status,
  headers: { 'content-length': '0', ...headers },
  body: Buffer.alloc(0),
});

/** Parses one `bytes=` range against a size; null: not satisfiable; undefined: no range asked. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return null;
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return null;
  return { start, end };
}

/** The reply to GET `urlPath` (with an optional Range header) from the files under `root`. */
export async function staticReply(root: string, urlPath: string, range: string | undefined): Promise<StaticReply> {
  let path: string;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return empty(400);
  }
  const segments = path.split('/').filter((s) => s !== '');
  if (path.includes('\0') || segments.some((s) => s.startsWith('.'))) return empty(404);
  const base = await realpath(root);
  const file = await realpath(resolve(base, ...segments)).catch(() => null);
  // realpath: a symlink inside the tree must not lead out of it.
  if (!file || !file.startsWith(base + sep)) return empty(404);
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return empty(404);
  try {
    const st = await handle.stat();
    if (!st.isFile()) return empty(404);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', 'last-modified': st.mtime.toUTCString() };
    const r = parseRange(range, st.size);
    if (r === null) return empty(416, { 'content-range': `bytes */${st.size}` });
    const { start, end } = r ?? { start: 0, end: st.size - 1 };
    const body = Buffer.alloc(Math.max(0, end - start + 1));
    if (body.length > 0) await handle.read(body, 0, body.length, start);
    if (r) headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
    headers['content-length'] = String(body.length);
    return { status: r ? 206 : 200, headers, body };
  } finally {
    await handle.close();
  }
}

export interface StaticServer {
  url: string;
  close(): Promise<void>;
}

/** Serves `root` on `host:port` (port 0: any free port). `onRequest` sees each request's line and status. */
export async function startStaticServer(root: string, host = '127.0.0.1', port = 0, onRequest?: (line: string) => void): Promise<StaticServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-length': '0' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const reply = await staticReply(root, url.pathname, req.headers.range);
    onRequest?.(`${req.method} ${url.pathname}${req.headers.range ? ` ${req.headers.range}` : ''} ${reply.status} ${reply.body.length}`);
    res.writeHead(reply.status, reply.headers);
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
