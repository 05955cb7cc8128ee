import type { CommandModule } from 'yargs';
import { startQemu } from '../image/qemu.js';

interface Args {
  disk: string;
  snapshot: boolean;
  network: boolean;
  accel: 'tcg' | 'kvm';
  memory: number;
}

async function bootHandler(args: Args): Promise<void> {
  const machine = await startQemu({
    disk: args.disk,
    snapshot: args.snapshot,
    network: args.network,
    accel: args.accel,
    memoryMiB: args.memory,
    stdio: 'inherit',
  });
  // QEMU owns the terminal; a signal to cairn alone would leave it running headless.
  const forward = (signal: NodeJS.Signals) => machine.process.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward);
  const code = await machine.exited;
  process.exitCode = code ?? 1;
}

const command: CommandModule<object, Args> = {
  command: 'boot <disk>',
  describe: 'Start a disk image in QEMU with OVMF (UEFI) on a serial console',
  builder: (y) =>
    y
      .positional('disk', { type: 'string', demandOption: true, describe: 'Disk image, e.g. images/<name>/<version>/disk.raw' })
      .option('snapshot', {
        type: 'boolean',
        default: false,
        describe: "Discard the guest's writes (boot counters, first-boot /etc) so the image stays as built",
      })
      .option('network', { type: 'boolean', default: false, describe: 'Give the guest a virtio NIC on QEMU user networking (the host is 10.0.2.2)' })
      .option('accel', {
        choices: ['tcg', 'kvm'] as const,
        default: 'tcg' as const,
        describe: 'tcg: software emulation, works everywhere; kvm: fast, needs a working /dev/kvm',
      })
      .option('memory', { type: 'number', default: 1024, describe: 'Guest memory in MiB' })
      .check((a) => {
        if (!Number.isInteger(a.memory) || a.memory < 128) throw new Error('--memory is in MiB and must be a whole number of at least 128');
        return true;
      })
      .epilogue(
        "The guest's serial console is this terminal, and QEMU exits with the guest (poweroff, or a failed boot). " +
          'Ctrl-A X quits QEMU at any time, Ctrl-A C switches to the QEMU monitor and back, Ctrl-C goes to the guest.',
      )
      .example('$0 boot images/tiny/0.1.0/disk.raw --snapshot', 'try an image without changing it; Ctrl-A X quits'),
  handler: bootHandler,
};

export default command;
