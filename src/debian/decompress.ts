// Debian compresses indexes and .deb members with xz, zstd or gzip. Node 20 has only gzip,
// so xz and zstd stream through the build host's own tools (xz-utils, zstd), which every
// Debian build host has; a failure of the tool surfaces as a stream error naming it.
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { CairnError } from '../errors.js';

export type CompressionKind = 'xz' | 'zst' | 'gz' | 'none';

/** The compression a Debian file name declares by its suffix (`data.tar.xz`, `Packages.gz`). */
export function compressionOf(name: string): CompressionKind {
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.zst')) return 'zst';
  if (name.endsWith('.gz')) return 'gz';
  return 'none';
}

function toolStream(command: string, args: string[]): Duplex {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  // The output ends only once the tool has exited cleanly, so truncated or corrupt input is an
  // error for the reader rather than a silently short stream.
  const output = new PassThrough();
  child.stdout.pipe(output, { end: false });
  // The tool may exit before reading all its input (corrupt data): the pipe error that writing
  // then raises says nothing, so it is dropped and the exit status below reports the cause.
  const input = new PassThrough();
  input.pipe(child.stdin);
  const duplex = Duplex.from({ writable: input, readable: output });
  child.on('error', (err) =>
    duplex.destroy(new CairnError(`cannot run ${command}: ${err.message}`, `install it (apt-get install ${command === 'xz' ? 'xz-utils' : command})`)),
  );
  child.on('close', (code) => {
    if (code === 0) output.end();
    else duplex.destroy(new CairnError(`${command} could not decompress the data: ${stderr.trim() || `exit code ${code}`}`));
  });
  // A consumer that stops early (a rejected archive) must not leave the tool writing into a closed pipe.
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  child.stdin.on('error', () => undefined);
  return duplex;
}

/** A transform stream that decompresses `kind`. */
export function decompressor(kind: CompressionKind): Duplex {
  switch (kind) {
    case 'gz':
      return createGunzip();
    case 'xz':
      return toolStream('xz', ['-dc', '-T1']);
    case 'zst':
      return toolStream('zstd', ['-dcq']);
    case 'none':
      return new PassThrough();
  }
}

/** Decompresses a whole buffer (indexes, control members). */
export async function decompressBuffer(data: Buffer, kind: CompressionKind): Promise<Buffer> {
  if (kind === 'none') return data;
  const chunks: Buffer[] = [];
  const out = Readable.from([data]).pipe(decompressor(kind));
  for await (const chunk of out) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
