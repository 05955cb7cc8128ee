// Download progress on stderr. A terminal gets one line redrawn in place; a log (CI) gets a
// line per tenth of the work or every ten seconds, so it shows life without flooding.
import type { Writable } from 'node:stream';

export interface ProgressOptions {
  /** Where to draw (default: process.stderr). */
  stream?: Writable & { isTTY?: boolean };
  /** Print nothing (tests, --json). */
  silent?: boolean;
  /** What is in progress (default "downloading"). */
  label?: string;
}

const TTY_REDRAW_MS = 100;
const LOG_EVERY_MS = 10_000;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export class Progress {
  private readonly stream: (Writable & { isTTY?: boolean }) | null;
  private totalFiles = 0;
  private totalBytes = 0;
  private files = 0;
  private bytes = 0;
  private startedAt = 0;
  private lastDraw = 0;
  private lastLoggedTenth = 0;
  private drewLine = false;
  private readonly label: string;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.silent ? null : (opts.stream ?? process.stderr);
    this.label = opts.label ?? 'downloading';
  }

  start(totalFiles: number, totalBytes: number): void {
    const now = Date.now();
    Object.assign(this, { totalFiles, totalBytes, files: 0, bytes: 0, startedAt: now, lastDraw: now, lastLoggedTenth: 0 });
  }

  /** Bytes received; negative when a failed attempt's bytes are discarded. */
  add(bytes: number): void {
    this.bytes += bytes;
    this.draw(false);
  }

  fileDone(): void {
    this.files++;
    this.draw(false);
  }

  finish(): void {
    this.draw(true);
    if (this.stream?.isTTY && this.drewLine) this.stream.write('\n');
  }

  private line(): string {
    const seconds = Math.max((Date.now() - this.startedAt) / 1000, 0.001);
    return `${this.label}: ${this.files}/${this.totalFiles} files, ${formatBytes(this.bytes)} of ${formatBytes(this.totalBytes)}, ${formatBytes(this.bytes / seconds)}/s`;
  }

  private draw(final: boolean): void {
    if (!this.stream || this.totalFiles === 0) return;
    const now = Date.now();
    if (this.stream.isTTY) {
      if (!final && now - this.lastDraw < TTY_REDRAW_MS) return;
      this.stream.write(`\r${this.line()}\x1b[K`);
      this.drewLine = true;
    } else {
      const tenth = this.totalBytes > 0 ? Math.floor((this.bytes / this.totalBytes) * 10) : 0;
      if (!final && tenth <= this.lastLoggedTenth && now - this.lastDraw < LOG_EVERY_MS) return;
      this.lastLoggedTenth = tenth;
      this.stream.write(`${this.line()}\n`);
    }
    this.lastDraw = now;
  }
}
