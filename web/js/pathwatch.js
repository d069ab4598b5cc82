// @ts-check
/**
 * Tells when a peer connection's network path has died, sooner than the
 * browser says so. Chromium calls a connection `disconnected` only ~5 s
 * after its path stops answering; the client restarts ICE (which tries
 * UDP, ICE-TCP and TURN again) as soon as one of these holds:
 *
 * - **Silence on both connections at once.** Both had bytes coming in on
 *   every look for a while (media, or RTCP feedback about our own media),
 *   and both stopped within `SILENCE_MS` of each other and stayed quiet
 *   for `SILENCE_MS`. One connection going quiet means nothing: everyone
 *   we watch may have muted, or we did. Both stopping together means the
 *   network did.
 * - **Unanswered checks.** Chromium checks a healthy path every 2.5 s and,
 *   once nothing has come in on it for 2.5 s, every ~50 ms: three checks
 *   in a row without an answer pile up ~2.5 s after a path dies, whatever
 *   flows on it. On a lossy but working path three lost checks in a row
 *   (7.5 s) are rare, and a restart that was not needed costs one
 *   renegotiation, not media.
 *
 * The decisions are kept apart from the browser's API so they can be
 * tested on their own (`tests/e2e/specs/pathwatch.test.js`).
 */

/** ICE checks in a row left unanswered that mean the path is gone. */
export const UNANSWERED_CHECKS = 3;

/** Time without a byte, on a connection that was receiving steadily,
 * that counts as silence (ms). Video, audio and RTCP feedback leave no
 * such gap on a working path. */
export const SILENCE_MS = 1_000;

/** Looks in a row that saw bytes come in, before a connection's flow
 * counts as steady (with looks every 500 ms: 1.5 s of it). */
export const STEADY_LOOKS = 3;

/**
 * One look at a connection's selected candidate pair (its stats).
 * @typedef {{id: string, requestsSent: number, responsesReceived: number, bytesReceived: number}} PathSample
 */

/**
 * What one look concluded.
 * @typedef {{answered: boolean, dead: boolean, silentSince: number|null}} PathVerdict
 * - `answered`: the path answered a check since the last look (or is a
 *   new path that has answered one): it works.
 * - `dead`: `UNANSWERED_CHECKS` checks in a row went unanswered.
 * - `silentSince`: when it was receiving steadily and has been quiet for
 *   `SILENCE_MS`, the time of its last bytes; only meaningful together
 *   with the other connection (`silentTogether`).
 */

/** Watches one connection's selected path, look after look. */
export class PathWatch {
  constructor() {
    /** @type {{id: string, responsesReceived: number, requestsAtAnswer: number, bytesReceived: number, steady: number, grew: boolean, lastBytesAt: number}|null} */
    this.path = null;
  }

  /** Forgets the path (the connection is not connected). */
  reset() {
    this.path = null;
  }

  /**
   * @param {PathSample} sample
   * @param {number} now milliseconds, any monotonic clock
   * @returns {PathVerdict}
   */
  look(sample, now) {
    const path = this.path;
    if (!path || path.id !== sample.id) {
      // A new path: at the start, after a restart, or the browser moved.
      this.path = {
        id: sample.id,
        responsesReceived: sample.responsesReceived,
        requestsAtAnswer: sample.requestsSent,
        bytesReceived: sample.bytesReceived,
        steady: 0,
        grew: false,
        lastBytesAt: now,
      };
      return { answered: path !== null && sample.responsesReceived > 0, dead: false, silentSince: null };
    }
    const answered = sample.responsesReceived > path.responsesReceived;
    if (answered) {
      path.responsesReceived = sample.responsesReceived;
      path.requestsAtAnswer = sample.requestsSent;
    }
    const grew = sample.bytesReceived > path.bytesReceived;
    if (grew) {
      path.steady = path.grew ? path.steady + 1 : 1;
      path.lastBytesAt = now;
      path.bytesReceived = sample.bytesReceived;
    }
    path.grew = grew;
    const silent = path.steady >= STEADY_LOOKS && now - path.lastBytesAt >= SILENCE_MS;
    return {
      answered,
      dead: sample.requestsSent - path.requestsAtAnswer >= UNANSWERED_CHECKS,
      silentSince: silent ? path.lastBytesAt : null,
    };
  }
}

/**
 * Whether two connections' verdicts say the network went silent: both
 * quiet, and their bytes stopped within `SILENCE_MS` of each other.
 * @param {PathVerdict} a
 * @param {PathVerdict} b
 */
export function silentTogether(a, b) {
  return a.silentSince !== null && b.silentSince !== null && Math.abs(a.silentSince - b.silentSince) <= SILENCE_MS;
}
