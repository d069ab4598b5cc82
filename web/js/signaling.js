// @ts-check
/**
 * The signaling WebSocket (see docs/protocol.md): JSON messages with a
 * `type`, reconnection with backoff, and events for the UI.
 *
 * Events (CustomEvent on the client):
 * - `message`: `detail` is one server message.
 * - `state`: `detail` is `'open' | 'reconnecting' | 'restarting' | 'closed' |
 *   'logged-out'` (`restarting`: the server said it is restarting, and the
 *   client reconnects to the new process; `logged-out`: the server closed
 *   the socket because its login session ended).
 */

/** @typedef {'connecting'|'open'|'reconnecting'|'restarting'|'closed'|'logged-out'} SignalingState */

const BACKOFF_MS = [500, 1000, 2000, 3000, 5000];
/** After `server-restarting`: retry every second for this many tries (a
 * restart takes seconds), then back off as after a network failure. */
const RESTART_TRIES = 30;
const RESTART_RETRY_MS = 1000;

export class SignalingClient extends EventTarget {
  constructor() {
    super();
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {SignalingState} */
    this.state = 'connecting';
    this.attempt = 0;
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.retryTimer = undefined;
    /** Set by `server-restarting`: the first retry's delay (ms). @type {number|null} */
    this.restartAfter = null;
    /** Tries left at the restart pace. */
    this.restartTries = 0;
  }

  /** Opens the connection; resolves once it is open (or rejects). */
  connect() {
    return new Promise((resolve, reject) => {
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.attempt = 0;
        this.restartTries = 0;
        this.setState('open');
        resolve(undefined);
      };
      ws.onmessage = (e) => {
        let message;
        try { message = JSON.parse(e.data); } catch { return; }
        if (message?.type === 'server-restarting') {
          this.restartAfter = Math.max(0, Number(message.retry_after_ms) || 0);
          this.restartTries = RESTART_TRIES;
        }
        this.dispatchEvent(new CustomEvent('message', { detail: message }));
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (!opened) reject(new Error('Cannot connect to the meeting server.'));
        if (e.reason === 'logged out') {
          // Reconnecting would only be refused: the session is gone.
          this.stopped = true;
          this.setState('logged-out');
        } else if (this.stopped) {
          this.setState('closed');
        } else {
          this.scheduleReconnect();
        }
      };
    });
  }

  scheduleReconnect() {
    let delay;
    if (this.restartTries > 0) {
      // A restart, not a failure: come back as soon as the new process
      // listens. The jitter spreads a whole server's clients over a second.
      this.setState('restarting');
      this.restartTries -= 1;
      delay = (this.restartAfter ?? RESTART_RETRY_MS) + Math.random() * 1000;
      this.restartAfter = null;
    } else {
      this.setState('reconnecting');
      delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.stopped) return;
      this.connect().catch(() => { /* onclose schedules the next try */ });
    }, delay);
  }

  /** @param {SignalingState} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  /**
   * Sends a message; returns false when the connection is down.
   * @param {Record<string, unknown>} message
   */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Closes for good (no reconnect). */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'bye');
    this.setState('closed');
  }
}
