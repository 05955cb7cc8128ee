import type { CommandModule } from 'yargs';
import { startQemu } from '../image/qemu.js';

interface Args {
  disk: string;
  snapshot: boolean;
  network: boolean;
  accel: 'tcg' | 'kvm';
  memory: number;
  config?: string;
  sshPort?: number;
}

async function bootHandler(args: Args): Promise<void> {
  const machine = await startQemu({
    disk: args.disk,
    snapshot: args.snapshot,
    // Forwarding SSH needs the network.
    network: args.network || args.sshPort !== undefined,
    forward: args.sshPort === undefined ? [] : [{ host: args.sshPort, guest: 22 }],
    ignition: args.config,
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
      .option('config', {
        type: 'string',
        describe: "An Ignition config for the guest's first boot (through fw_cfg, as Ignition reads it on QEMU); check it first with cairn provision check",
      })
      .option('ssh-port', { type: 'number', describe: "Forward 127.0.0.1:N to the guest's SSH port (implies --network)" })
      .check((a) => {
        if (!Number.isInteger(a.memory) || a.memory < 128) throw new Error('--memory is in MiB and must be a whole number of at least 128');
        if (a['ssh-port'] !== undefined && !(Number.isInteger(a['ssh-port']) && a['ssh-port'] > 0 && a['ssh-port'] < 65536))
          throw new Error('--ssh-port is a TCP port, 1 to 65535');
        return true;
      })
      .epilogue(
        "The guest's serial console is this terminal, and QEMU exits with the guest (poweroff, or a failed boot). " +
          'Ctrl-A X quits QEMU at any time, Ctrl-A C switches to the QEMU monitor and back, Ctrl-C goes to the guest.',
      )
      .example('$0 boot images/tiny/0.1.0/disk.raw --snapshot', 'try an image without changing it; Ctrl-A X quits')
      .example(
        '$0 boot images/container-host/0.1.0/disk.raw --snapshot --config host.ign --ssh-port 2222',
        'a provisioned host; then ssh -p 2222 USER@127.0.0.1',
      ),
  handler: bootHandler,
};

export default command;
