// Cron expressions in plain words ("30 2 * * *" → "at 02:30 every day"), for the schedule pages.
//
// This only describes an expression; whether it is valid and when it fires is the server's to say (the forms
// show its preview beside the words). It reads what the server accepts — five fields, or six with seconds
// first; "*", values, ranges, steps, lists, month and weekday names; the "@" aliases — and answers null for
// anything else, so the page then shows the expression alone.

const ALIASES = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};
const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const ITEM = /^(?:(\*)|(\w+)(?:-(\w+))?)(?:\/(\d+))?$/;
// Up to this many times of day are listed; more read as "every N minutes" and the like.
const MAX_TIMES = 6;

/** One field: the values it matches, whether it is "*" (all), and its step when it is "*\/n". */
function parseField(text, low, high, names = [], offset = 0) {
  const values = new Set();
  let step = null;
  for (const item of text.split(",")) {
    const found = ITEM.exec(item);
    if (!found) return null;
    const every = found[4] ? Number(found[4]) : 1;
    let first;
    let last;
    if (found[1]) {
      [first, last] = [low, high];
      if (every > 1 && !text.includes(",")) step = every;
    } else {
      first = number(found[2], names, offset);
      last = found[3] ? number(found[3], names, offset) : first;
      if (found[4] && !found[3]) return null;
    }
    if (!(low <= first && first <= last && last <= high) || every < 1) return null;
    for (let value = first; value <= last; value += every) values.add(value);
  }
  const sorted = [...values].sort((a, b) => a - b);
  return { values: sorted, all: sorted.length === high - low + 1, star: text.startsWith("*"), step };
}

function number(text, names, offset) {
  if (/^\d+$/.test(text)) return Number(text);
  const index = names.indexOf(text.toUpperCase());
  return index < 0 ? NaN : index + offset;
}

function join(words) {
  return words.length === 1 ? words[0] : `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

/** Consecutive runs of three or more read "a to b". */
function named(values, names) {
  const words = [];
  let start = 0;
  for (let i = 1; i <= values.length; i += 1) {
    if (i < values.length && values[i] === values[i - 1] + 1) continue;
    const run = values.slice(start, i);
    if (run.length >= 3) words.push(`${names[run[0]]} to ${names[run[run.length - 1]]}`);
    else words.push(...run.map((value) => names[value]));
    start = i;
  }
  return join(words);
}

const pad = (n) => String(n).padStart(2, "0");

function timeWords(second, minute, hour, withSeconds) {
  const seconds = withSeconds ? second.values : [0];
  if (!minute.all && !hour.all && seconds.length * minute.values.length * hour.values.length <= MAX_TIMES) {
    const times = [];
    for (const h of hour.values) for (const m of minute.values) for (const s of seconds) times.push(`${pad(h)}:${pad(m)}${withSeconds && s ? `:${pad(s)}` : ""}`);
    return `at ${join(times)}`;
  }
  const parts = [];
  if (withSeconds && !(second.values.length === 1 && second.values[0] === 0)) {
    parts.push(second.all ? "every second" : second.step ? `every ${second.step} seconds` : `at second ${join(second.values.map(String))}`);
  }
  if (minute.all) parts.push(parts.length ? (second.all || second.step ? "" : "of every minute") : "every minute");
  else if (minute.step) parts.push(`every ${minute.step} minutes`);
  else parts.push(`at minute ${join(minute.values.map(String))}`);
  if (hour.all) parts.push(minute.all || minute.step ? "" : "of every hour");
  else if (hour.step) parts.push(`of every ${hour.step} hours`);
  else parts.push(hourWords(hour.values));
  return parts.filter(Boolean).join(" ");
}

function hourWords(hours) {
  const first = hours[0];
  const last = hours[hours.length - 1];
  if (last - first === hours.length - 1) return `between ${pad(first)}:00 and ${pad(last)}:59`;
  return `in the hours starting ${join(hours.map((h) => `${pad(h)}:00`))}`;
}

function dayWords(day, month, weekday) {
  const parts = [];
  const days = day.all ? null : `on day ${join(day.values.map(String))} of the month`;
  const weekdays = weekday.all ? null : `on ${named(weekday.values, DAY_NAMES)}`;
  if (days && weekdays) parts.push(day.star || weekday.star ? `${days}, if it is ${named(weekday.values, DAY_NAMES)}` : `${days} or ${weekdays}`);
  else if (days || weekdays) parts.push(days || weekdays);
  else parts.push("every day");
  if (!month.all) parts.push(`in ${named(month.values.map((m) => m - 1), MONTH_NAMES)}`);
  return parts.join(" ");
}

/** ``expression`` in words, or null when it is not an expression this can read. */
export function describeCron(expression) {
  const text = ALIASES[String(expression).trim().toLowerCase()] || String(expression).trim();
  const parts = text.split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) return null;
  const withSeconds = parts.length === 6;
  if (!withSeconds) parts.unshift("0");
  const second = parseField(parts[0], 0, 59);
  const minute = parseField(parts[1], 0, 59);
  const hour = parseField(parts[2], 0, 23);
  const day = parseField(parts[3], 1, 31);
  const month = parseField(parts[4], 1, 12, MONTHS, 1);
  let weekday = parseField(parts[5], 0, 7, DAYS);
  if (![second, minute, hour, day, month, weekday].every(Boolean)) return null;
  const values = [...new Set(weekday.values.map((value) => value % 7))].sort((a, b) => a - b);
  weekday = { ...weekday, values, all: values.length === 7 };
  const when = timeWords(second, minute, hour, withSeconds);
  const days = dayWords(day, month, weekday);
  // "every 5 minutes" needs no "every day" after it; "at 02:30" does.
  return days === "every day" && !when.startsWith("at ") ? when : `${when} ${days}`;
}
