import { spawn } from 'node:child_process';
import { CairnError } from './errors.js';

/** Debian packages that ship the tools cairn runs, for the hint when one is missing. */
const TOOL_PACKAGES: Record<string, string> = {
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  mdir: 'mtools',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  xz: 'xz-utils',
  depmod: 'kmod',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  veritysetup: 'cryptsetup-bin',
};

export interface ToolOptions {
  env?: Record<string, string>;
  /** Bytes for the tool's standard input (closed without any when absent). */
  input?: Uint8Array;
}

/** Runs a build-host tool and returns its standard output; its failure is the user's to fix (missing tool, full disk), so it is a CairnError. */
export function runToolBytes(command: string, args: string[], options: ToolOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (err) =>
      reject(new CairnError(`cannot run ${command}: ${err.message}`, `install ${TOOL_PACKAGES[command] ?? command} on the build host`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new CairnError(`${command} ${args.join(' ')} failed: ${stderr.trim() || Buffer.concat(out).toString().trim() || `exit code ${code}`}`));
    });
    if (options.input && child.stdin) {
      // A tool that exits early reports why through its status; the pipe error adds nothing.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}

export async function runTool(command: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return (await runToolBytes(command, args, { env })).toString();
}
