import type { CommandModule } from 'yargs';
import { startStaticServer } from '../release/static-server.js';
import { logLine, OPTIONS } from './options.js';

interface Args {
  repo: string;
  host: string;
  port: number;
  quiet: boolean;
}

async function serveHandler(args: Args): Promise<void> {
  const server = await startStaticServer(args.repo, args.host, args.port, args.quiet ? undefined : logLine);
  // The URL goes to stdout alone, so a script can read where to point hosts.
  process.stdout.write(`${server.url}\n`);
  logLine(`serving ${args.repo}; Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      void server.close().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

const command: CommandModule<object, Args> = {
  command: 'serve',
  describe: 'Serve an update repository over HTTP (GET, HEAD, byte ranges) for development and tests; production uses any static server',
  builder: (y) =>
    y
      .option('repo', OPTIONS.repo)
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to listen on (QEMU guests reach the host loopback as 10.0.2.2)' })
      .option('port', { type: 'number', default: 8080, describe: 'Port (0: any free port; the URL is printed)' })
      .option('quiet', { type: 'boolean', default: false, describe: 'Do not log requests' })
      .example('$0 serve --repo repo --port 8080', 'hosts use http://HOST:8080 as their repository URL'),
  handler: serveHandler,
};

export default command;
