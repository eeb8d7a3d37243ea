// Live tail of an attempt's log: GET /api/v1/instances/{id}/logs/stream (Server-Sent Events) read with fetch.
//
// EventSource cannot send an Authorization header and the stream accepts the token only there (a token in
// the URL would end up in access logs), so the stream is read with fetch() and parsed here. The server sends
// "log" events (data: a TaskLogEntry; the last of each batch carries the read position as its id), comment
// lines while idle, and one "end" event (data: {instance_id, status}) when the attempt is over. When the
// connection drops first, the tail reconnects after a short pause from the last position it saw, as
// EventSource would.

import { API, authHeaders, errorOf, unauthorized } from "./api.js";

const RETRY_MS = [500, 1000, 2000, 5000];

/** Incremental text/event-stream parser: push() decoded text, get back the complete events in it. */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
  }

  /** Events completed by ``text``: [{event, data, id}] (id is null when the event set none). */
  push(text) {
    this.buffer += text;
    const events = [];
    // Events end with a blank line; CRLF, LF and CR line ends are all allowed by the format.
    const blocks = this.buffer.split(/\r\n\r\n|\n\n|\r\r/);
    this.buffer = blocks.pop();
    for (const block of blocks) {
      const event = { event: "message", data: [], id: null };
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let item = colon < 0 ? "" : line.slice(colon + 1);
        if (item.startsWith(" ")) item = item.slice(1);
        if (name === "event") event.event = item;
        else if (name === "data") event.data.push(item);
        else if (name === "id") event.id = item;
      }
      if (event.data.length || event.id !== null) events.push({ ...event, data: event.data.join("\n") });
    }
    return events;
  }
}

/**
 * Follow the log of ``instanceId`` from position ``after`` until the attempt ends or ``signal`` aborts.
 * Calls onEntry(entry) per chunk, onState("live" | "reconnecting") as the connection changes, and resolves
 * with the attempt's final status. Rejects with ApiError when the server refuses the stream (404, 401...).
 */
export async function tailLog(instanceId, { after = 0, signal, onEntry, onState = () => {} }) {
  let position = after;
  let failures = 0;
  while (!signal.aborted) {
    let response;
    try {
      response = await fetch(`${API}/instances/${encodeURIComponent(instanceId)}/logs/stream?after_seq=${position}`, {
        headers: authHeaders(undefined, { Accept: "text/event-stream" }),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (signal.aborted) throw error;
      response = null; // the network failed: retry below
    }
    if (response && !response.ok) {
      if (response.status === 401) unauthorized();
      throw await errorOf(response);
    }
    if (response) {
      onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new EventStreamParser();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const event of parser.push(value)) {
            if (event.id !== null && /^\d+$/.test(event.id)) position = Number(event.id);
            if (event.event === "log") onEntry(JSON.parse(event.data));
            else if (event.event === "end") return JSON.parse(event.data).status;
          }
          failures = 0;
        }
      } catch (error) {
        if (signal.aborted) throw error;
      }
    }
    onState("reconnecting");
    await sleep(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)], signal);
    failures += 1;
  }
  throw new DOMException("aborted", "AbortError");
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
