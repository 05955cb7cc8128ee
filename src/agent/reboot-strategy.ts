// When a host may reboot into a staged update. Maintenance windows are local times in an IANA
// time zone, converted with Intl (no time zone database of our own), so they follow the zone's
// daylight saving rules as the system's ICU knows them.
import { CairnError } from '../errors.js';

export type Weekday = 'sun' | 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat';

/** Indexed like Date.getUTCDay(). */
const WEEKDAYS: readonly Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface MaintenanceWindow {
  /** Days the window opens on (local to the time zone); a window past midnight ends the next day. */
  days: Weekday[];
  /** HH:MM local time. */
  start: string;
  /** HH:MM local time; not after start means the next day. */
  end: string;
  timeZone: string;
}

export type RebootStrategy =
  | { type: 'immediate' }
  /** Stage the update, reboot only on the operator's command (`cairn agent reboot`). */
  | { type: 'download-only' }
  | ({ type: 'maintenance-window' } & MaintenanceWindow)
  /** Reboot once a FleetLock server (airlock, …) grants a slot in the group. */
  | { type: 'fleetlock'; url: string; group: string };

export type RebootDecision =
  | { action: 'reboot'; reason: string }
  | { action: 'wait-for-operator'; reason: string }
  | { action: 'wait-until'; at: Date; reason: string }
  /** Take a slot from the lock server, then reboot; release it once healthy (FleetLockClient). */
  | { action: 'take-lock'; url: string; group: string; reason: string };

/** What to do with a staged update at `now`; an operator's explicit request always reboots. */
export function decideReboot(strategy: RebootStrategy, now: Date, operatorRequested = false): RebootDecision {
  if (operatorRequested) return { action: 'reboot', reason: 'the operator asked for the reboot' };
  switch (strategy.type) {
    case 'immediate':
      return { action: 'reboot', reason: 'strategy immediate' };
    case 'download-only':
      return { action: 'wait-for-operator', reason: 'strategy download-only: run `cairn agent reboot` to boot the staged update' };
    case 'fleetlock':
      return {
        action: 'take-lock',
        url: strategy.url,
        group: strategy.group,
        reason: `strategy fleetlock: waiting for a reboot slot in group ${strategy.group}`,
      };
    case 'maintenance-window': {
      const window = windowAt(strategy, now);
      if (window.open) return { action: 'reboot', reason: `inside the maintenance window until ${window.end.toISOString()}` };
      return { action: 'wait-until', at: window.start, reason: `strategy maintenance-window: the next window opens at ${window.start.toISOString()}` };
    }
  }
}

export interface WindowTimes {
  /** Whether `now` lies inside [start, end). */
  open: boolean;
  start: Date;
  end: Date;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

/**
 * The window that is open at `now`, else the next one to open. On a day whose clocks jump, a
 * local time inside the gap means the moment right after it (02:30 on a spring-forward night is
 * 03:30), and a local time that occurs twice means the first time; a window the jump leaves empty
 * (02:30 to 03:00 when 02:00 becomes 03:00) does not happen that day.
 */
export function windowAt(window: MaintenanceWindow, now: Date): WindowTimes {
  const startMinutes = clockMinutes(window.start);
  const endMinutes = clockMinutes(window.end);
  if (startMinutes === endMinutes) throw new CairnError(`maintenance window ${window.start}-${window.end} is empty`, 'set an end different from start');
  const nowMs = now.getTime();
  // Midnight of today's local date, as a wall-clock count (Date.UTC of the local fields).
  const today = Math.floor(wallClock(nowMs, window.timeZone) / DAY) * DAY;
  // From yesterday (its window may run past midnight) to two weeks out, for days a jump empties.
  for (let day = -1; day <= 14; day++) {
    const date = today + day * DAY;
    if (!window.days.includes(WEEKDAYS[new Date(date).getUTCDay()]!)) continue;
    const start = zonedInstant(date + startMinutes * MINUTE, window.timeZone);
    const end = zonedInstant(date + (endMinutes > startMinutes ? 0 : DAY) + endMinutes * MINUTE, window.timeZone);
    if (end <= start || end <= nowMs) continue;
    return { open: start <= nowMs, start: new Date(start), end: new Date(end) };
  }
  throw new CairnError(
    `maintenance window ${window.start}-${window.end} on ${window.days.join(', ')} never opens in ${window.timeZone}`,
    'choose times that exist in the time zone',
  );
}

function clockMinutes(text: string): number {
  const match = /^([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(text);
  if (!match) throw new CairnError(`not a time of day: ${JSON.stringify(text)}`, 'write HH:MM, 00:00 to 23:59');
  return Number(match[1]) * 60 + Number(match[2]);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Whether this system's ICU knows `timeZone`. */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The local wall-clock time of an instant in `timeZone`, as Date.UTC of its fields (whole seconds). */
export function wallClock(instant: number, timeZone: string): number {
  const fields: Partial<Record<Intl.DateTimeFormatPartTypes, number>> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(instant))) fields[part.type] = Number(part.value);
  return Date.UTC(fields.year!, fields.month! - 1, fields.day!, fields.hour!, fields.minute!, fields.second!);
}

function offsetAt(instant: number, timeZone: string): number {
  const whole = Math.floor(instant / 1000) * 1000;
  return wallClock(whole, timeZone) - whole;
}

/**
 * The instant a local wall-clock time (Date.UTC of its fields) names in `timeZone`: the earlier
 * one when the time occurs twice, the one right after the gap when it does not occur.
 */
export function zonedInstant(wall: number, timeZone: string): number {
  // A zone changes its offset at most once within a day, so the offsets a day before and a day
  // after are the only candidates.
  const before = offsetAt(wall - DAY, timeZone);
  const after = offsetAt(wall + DAY, timeZone);
  const matches = [wall - before, wall - after].filter((t) => wallClock(t, timeZone) === wall);
  if (matches.length > 0) return Math.min(...matches);
  return wall - before;
}
