import type { CommandModule } from 'yargs';
import agent from './agent.js';
import boot from './boot.js';
import build from './build.js';
import channel from './channel.js';
import delta from './delta.js';
import inspect from './inspect.js';
import keys from './keys.js';
import layer from './layer.js';
import lock from './lock.js';
import publish from './publish.js';
import serve from './serve.js';
import logs from './logs.js';
import ps from './ps.js';
import rm from './rm.js';
import run from './run.js';
import stop from './stop.js';
import validate from './validate.js';
import verify from './verify.js';

// Each command's arguments are typed in its own module; the list only needs them as commands.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [validate, lock, build, keys, verify, inspect, boot, publish, channel, delta, serve, agent, layer, run, ps, logs, stop, rm];
