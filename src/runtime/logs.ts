// A detached container's output: its stdout and stderr go, interleaved as written, to
// container.log in its data directory; `cairn logs` copies that file, and with --follow keeps
// copying until the container is no longer running.
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CairnError } from '../errors.js';
import { containerPaths, containerStatus, readState } from './state.js';

const FOLLOW_POLL_MS = 200;

export async function copyLogs(name: string, out: NodeJS.WritableStream, follow: boolean): Promise<void> {
  const state = await readState(name);
  const file = await open(containerPaths(name).logFile, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT')
      throw new CairnError(`container ${name} has no log`, 'only detached containers (cairn run -d) write one; a foreground one writes to your terminal');
    throw err;
  });
  try {
    const buf = Buffer.alloc(64 * 1024);
    let position = 0;
    const drain = async () => {
      for (let n; (n = (await file.read(buf, 0, buf.length, position)).bytesRead) > 0; position += n) {
        if (!out.write(Buffer.from(buf.subarray(0, n)))) await new Promise((res) => out.once('drain', res));
      }
    };
    await drain();
    while (follow && (await containerStatus(state)).status === 'running') {
      await sleep(FOLLOW_POLL_MS);
      await drain();
    }
    await drain(); // whatever came between the last read and the exit
  } finally {
    await file.close();
  }
}
