// Drives a QEMU guest through its serial console: waits for lines the guest prints, types
// commands, and always ends the QEMU it started.
import { startQemu, type QemuMachine, type QemuOptions } from '../../src/image/qemu.js';

export class SerialConsole {
  private text = '';
  private waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  private constructor(readonly machine: QemuMachine) {
    const onData = (chunk: Buffer) => {
      this.text += chunk.toString('latin1').replace(/\r/g, '');
      this.waiters = this.waiters.filter((w) => {
        const match = this.text.match(w.pattern);
        if (match) w.resolve(match);
        return !match;
      });
    };
    machine.process.stdout!.on('data', onData);
    machine.process.stderr!.on('data', onData);
  }

  static async boot(options: Omit<QemuOptions, 'stdio'>): Promise<SerialConsole> {
    return new SerialConsole(await startQemu({ ...options, stdio: 'pipe' }));
  }

  /** Everything the guest printed so far. */
  get output(): string {
    return this.text;
  }

  /** The lines matching `pattern`, the last `max` characters of them: what a failed test reports. */
  lines(pattern: RegExp, max: number): string {
    return this.text
      .split('\n')
      .filter((l) => pattern.test(l))
      .join('\n')
      .slice(-max);
  }

  /**
   * Resolves with the first match of `pattern`; rejects on timeout or when QEMU exits first.
   * Output arrives in arbitrary chunks, so a pattern that ends in a variable-length capture
   * must end in `\n` or it can match half a line.
   */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const existing = this.text.match(pattern);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; console ends with:\n${this.text.slice(-3000)}`)),
        timeoutMs,
      );
      const waiter = {
        pattern,
        resolve: (m: RegExpMatchArray) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.waiters.push(waiter);
      void this.machine.exited.then(() => {
        if (!this.waiters.includes(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`QEMU exited before ${pattern} appeared; console ends with:\n${this.text.slice(-3000)}`));
      });
    });
  }

  type(line: string): void {
    this.machine.process.stdin!.write(`${line}\n`);
  }

  /** Waits for QEMU to end by itself (guest power-off or reboot with -no-reboot), else kills it. */
  async exit(timeoutMs: number): Promise<number | null> {
    const timer = setTimeout(() => this.machine.process.kill('SIGKILL'), timeoutMs);
    try {
      return await this.machine.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    if (this.machine.process.exitCode === null && this.machine.process.signalCode === null) this.machine.process.kill('SIGKILL');
    await this.machine.exited.catch(() => undefined);
  }
}
