// The agent's events: one JSON object per line on stderr, so journald keeps them and tools can
// parse them (the end-to-end tests read them from the serial console).
import type { Log } from './update.js';

export const eventLog: Log = (event, fields = {}) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n');
};
