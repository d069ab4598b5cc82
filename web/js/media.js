// @ts-check
/**
 * The participant's two peer connections with the SFU (see
 * docs/protocol.md): `publish` carries our microphone, camera and screen,
 * and only we offer on it; `subscribe` carries everyone else's tracks, and
 * only the server offers on it. Offers can therefore never cross.
 *
 * The server recycles subscribe m-lines: when someone leaves, their lines
 * turn inactive, and a later track of the same kind takes one over (a new
 * label for the same mid). Remote tracks are therefore keyed by mid and
 * re-announced whenever a mid's label changes.
 *
 * Events (CustomEvent):
 * - `remote-track`: `{mid, participantId, source, kind, track, receiver}`
 * - `remote-track-removed`: `{mid, participantId, source, kind}`
 * - `error`: `{message}` for a negotiation that failed.
 * - `connection-lost`: `{pc}` when an ICE restart did not bring a
 *   connection back; the room then joins afresh.
 */

import { inboundStats } from './inbound.js';
import { PathWatch, silentTogether } from './pathwatch.js';

/** @typedef {'camera'|'microphone'|'screen'|'screen-audio'} Source */
/** @typedef {{mid: string, participant_id: string, source: Source, kind: 'audio'|'video'}} TrackLabel */
/** @typedef {{mid: string, participantId: string, source: Source, kind: string, track: MediaStreamTrack, receiver: RTCRtpReceiver}} RemoteTrack */

const PC_CONFIG = /** @type {RTCConfiguration} */ ({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });

/**
 * With `localStorage['zync.relayOnly'] = '1'` the browser uses only TURN
 * relay candidates: how operators (and the tests) check that the TURN
 * server works, as people on UDP-blocking networks will rely on it.
 * @returns {RTCIceTransportPolicy}
 */
function transportPolicy() {
  try {
    return localStorage.getItem('zync.relayOnly') === '1' ? 'relay' : 'all';
  } catch {
    return 'all';
  }
}

/** How long an ICE restart may take before the room joins afresh. */
const REJOIN_AFTER_MS = 10_000;

/** How often each connection's path is looked at (`watchPaths`). */
const PATH_WATCH_MS = 500;

/**
 * The selected candidate pair of `pc` (its stats), or null while there
 * is none.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<import('./pathwatch.js').PathSample|null>}
 */
async function selectedPath(pc) {
  const report = await pc.getStats();
  for (const entry of report.values()) {
    if (entry.type !== 'transport' || !entry.selectedCandidatePairId) continue;
    const pair = report.get(entry.selectedCandidatePairId);
    if (pair) {
      return {
        id: pair.id,
        requestsSent: pair.requestsSent ?? 0,
        responsesReceived: pair.responsesReceived ?? 0,
        bytesReceived: pair.bytesReceived ?? 0,
      };
    }
  }
  return null;
}

/**
 * Upper bitrates that keep a room of many comfortable. The microphone goes
 * out as RED (each packet also carries the previous one, so a single lost
 * packet is rebuilt from the next), which doubles what it sends: 32 kbit/s
 * Opus (clear wideband speech) with RED costs what 64 kbit/s did without.
 */
const MAX_BITRATE = { camera: 1_500_000, screen: 2_500_000, microphone: 32_000, 'screen-audio': 96_000 };

/**
 * The camera goes out as three simulcast layers (docs/protocol.md): the
 * server forwards each viewer the smallest that covers its tile, so small
 * tiles and weak links cost little while a large tile stays sharp. Lowest
 * first, as browsers expect. One temporal layer each (`L1T1`): Chromium
 * otherwise encodes simulcast VP8 in three, and a receiver skips a
 * top-layer frame whose repair comes late instead of waiting for it; at
 * 5 % loss per hop that decoded 14 frames a second of 20 (20 with `L1T1`).
 * @type {RTCRtpEncodingParameters[]}
 */
const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000, scalabilityMode: 'L1T1' },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000, scalabilityMode: 'L1T1' },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: MAX_BITRATE.camera, scalabilityMode: 'L1T1' },
];

/**
 * @param {Source} source
 * @param {boolean} simulcast whether the server asks for camera layers
 */
function encodingsFor(source, simulcast) {
  return source === 'camera' && simulcast ? CAMERA_LAYERS.map((l) => ({ ...l })) : [{ maxBitrate: MAX_BITRATE[source] }];
}

export class MediaSession extends EventTarget {
  /**
   * @param {{send: (message: Record<string, unknown>) => boolean}} signaling
   * @param {RTCIceServer[]} iceServers TURN servers from the API (may be empty)
   */
  constructor(signaling, iceServers = []) {
    super();
    this.signaling = signaling;
    const config = { ...PC_CONFIG, iceServers, iceTransportPolicy: transportPolicy() };
    this.publish = new RTCPeerConnection(config);
    this.subscribe = new RTCPeerConnection(config);
    /** Our transceivers by source. @type {Map<Source, RTCRtpTransceiver>} */
    this.senders = new Map();
    /** Labels of the latest subscribe offer, by mid. @type {Map<string, TrackLabel>} */
    this.labels = new Map();
    /** Remote tracks announced to the UI, by mid. @type {Map<string, RemoteTrack>} */
    this.remote = new Map();
    this.negotiating = false;
    this.negotiateAgain = false;
    this.closed = false;
    /** A queue so subscribe offers are applied one after another. */
    this.subscribeQueue = Promise.resolve();
    /** The simulcast layers the server last asked for, by source, and
     * the queue applying them. @type {Map<Source, string[]>} */
    this.wantedLayers = new Map();
    /** Send the camera as simulcast layers (`existing-users`' `publishing`). */
    this.simulcast = true;
    this.layersQueue = Promise.resolve();

    this.publish.onicecandidate = (e) => {
      if (e.candidate) this.signaling.send({ type: 'signal', pc: 'publish', candidate: e.candidate.toJSON() });
    };
    this.subscribe.onicecandidate = (e) => {
      if (e.candidate) this.signaling.send({ type: 'signal', pc: 'subscribe', candidate: e.candidate.toJSON() });
    };
    /** Per connection being restarted: the deadline of its restart.
     * @type {Map<'publish'|'subscribe', {timer: ReturnType<typeof setTimeout>}>} */
    this.recovering = new Map();
    /** Per connection: what is known of its selected path. */
    this.paths = { publish: new PathWatch(), subscribe: new PathWatch() };
    this.watch(this.publish, 'publish');
    this.watch(this.subscribe, 'subscribe');
    this.watchingPaths = false;
    this.pathTimer = setInterval(() => this.watchPaths(), PATH_WATCH_MS);
  }

  /**
   * Keeps a connection alive across a network change (Wi-Fi to a hotspot,
   * UDP suddenly blocked): when it loses its path, ICE restarts with new
   * credentials, so every candidate pair (UDP, TCP, a relay) is tried
   * again, and the participant stays in the meeting. If that does not
   * bring it back within REJOIN_AFTER_MS, `connection-lost` tells the room
   * to join afresh.
   * @param {RTCPeerConnection} pc
   * @param {'publish'|'subscribe'} name
   */
  watch(pc, name) {
    pc.addEventListener('iceconnectionstatechange', () => {
      if (this.closed) return;
      const state = pc.iceConnectionState;
      const pending = this.recovering.get(name);
      if (state === 'connected' || state === 'completed') {
        this.recovered(name);
      } else if ((state === 'disconnected' || state === 'failed') && !pending) {
        // The browser calls a path `disconnected` once its checks have gone
        // unanswered for about 5 s (Chromium), and moves to another working
        // pair by itself when it has one: nothing is gained by waiting.
        this.restartIce(name);
      }
    });
  }

  /**
   * Restarts ICE on connections whose path died (`pathwatch.js`), without
   * waiting ~5 s for the browser to call them `disconnected`: when UDP
   * stops (a firewall, a hotspot gone), media moves to another path
   * (ICE-TCP, TURN) seconds sooner. A connection being restarted is back
   * once its selected path answers again, which may come without a state
   * change: the old path stays `connected` until the new one takes over.
   */
  async watchPaths() {
    if (this.watchingPaths) return;
    this.watchingPaths = true;
    try {
      await this.lookAtPaths();
    } finally {
      this.watchingPaths = false;
    }
  }

  /** One look at both connections' selected paths (`pathwatch.js`). */
  async lookAtPaths() {
    const now = performance.now();
    /** @type {Partial<Record<'publish'|'subscribe', import('./pathwatch.js').PathVerdict>>} */
    const verdicts = {};
    for (const name of /** @type {const} */ (['publish', 'subscribe'])) {
      const pc = this[name];
      const state = pc.iceConnectionState;
      const sample = state === 'connected' || state === 'completed' ? await selectedPath(pc).catch(() => null) : null;
      if (this.closed) return;
      if (!sample) {
        this.paths[name].reset();
        continue;
      }
      const verdict = this.paths[name].look(sample, now);
      verdicts[name] = verdict;
      if (verdict.answered) this.recovered(name);
      else if (verdict.dead && !this.recovering.has(name)) this.restartIce(name);
    }
    const { publish, subscribe } = verdicts;
    if (publish && subscribe && silentTogether(publish, subscribe)) {
      for (const name of /** @type {const} */ (['publish', 'subscribe'])) {
        if (!this.recovering.has(name)) this.restartIce(name);
      }
    }
  }

  /** @param {'publish'|'subscribe'} name a connection whose path works */
  recovered(name) {
    const pending = this.recovering.get(name);
    if (pending) clearTimeout(pending.timer);
    this.recovering.delete(name);
  }

  /** @param {'publish'|'subscribe'} name */
  restartIce(name) {
    if (this.closed) return;
    const timer = setTimeout(() => {
      if (!this.closed) this.dispatchEvent(new CustomEvent('connection-lost', { detail: { pc: name } }));
    }, REJOIN_AFTER_MS);
    this.recovering.set(name, { timer });
    if (name === 'publish') {
      // Our offer carries new credentials; the server answers in kind.
      this.publish.restartIce();
      this.negotiate();
    } else {
      // Only the server offers on this connection: ask it to.
      this.signaling.send({ type: 'ice-restart' });
    }
  }

  /**
   * Sends `track` as `source`, or stops sending it when null. Microphone
   * and camera keep their m-line and swap tracks with `replaceTrack`: muting
   * puts `null` there, so no packet goes out (not even silence), and
   * unmuting resumes at once without renegotiating. A screen share adds an
   * m-line and removing it renegotiates.
   * @param {Source} source
   * @param {MediaStreamTrack|null} track
   * @param {{reserve?: 'audio'|'video'}} [options] with no track, still
   *   negotiate an m-line of this kind, so that a later track starts at once
   */
  async setTrack(source, track, options = {}) {
    if (this.closed) return;
    const existing = this.senders.get(source);
    const keepsLine = source === 'microphone' || source === 'camera';
    if (existing && (track || keepsLine)) {
      await existing.sender.replaceTrack(track);
      return;
    }
    if (existing) {
      this.senders.delete(source);
      await existing.sender.replaceTrack(null);
      existing.stop();
      await this.negotiate();
      return;
    }
    if (!track && !options.reserve) return;
    if (track && source === 'screen' && 'contentHint' in track) track.contentHint = 'detail';
    const transceiver = this.publish.addTransceiver(track ?? /** @type {'audio'|'video'} */ (options.reserve), {
      direction: 'sendonly',
      sendEncodings: encodingsFor(source, this.simulcast),
    });
    this.senders.set(source, transceiver);
    await this.negotiate();
  }

  /**
   * Turns simulcast encodings on or off as the server asks
   * (`publisher-layers`): layers nobody watches are not encoded at all.
   * Calls are applied one after another (`setParameters` refuses a second
   * change while one is pending), the latest request winning.
   * @param {Source} source
   * @param {string[]} active rids to keep sending
   */
  setActiveLayers(source, active) {
    this.wantedLayers.set(source, active);
    this.layersQueue = this.layersQueue.then(async () => {
      const transceiver = this.senders.get(source);
      const wanted = this.wantedLayers.get(source);
      if (!transceiver || !wanted || this.closed) return;
      const params = transceiver.sender.getParameters();
      let changed = false;
      for (const encoding of params.encodings ?? []) {
        const on = encoding.rid === undefined || wanted.includes(encoding.rid);
        if (encoding.active !== on) {
          encoding.active = on;
          changed = true;
        }
      }
      if (!changed) return;
      try {
        await transceiver.sender.setParameters(params);
      } catch (e) {
        // Not fatal: every layer keeps sending, as before dynacast.
        console.warn(`could not change the ${source} layers`, e);
      }
    });
  }

  /** Offers our current tracks on `publish`; changes during a negotiation
   * trigger one more round after the answer. */
  async negotiate() {
    if (this.closed) return;
    if (this.negotiating) {
      this.negotiateAgain = true;
      return;
    }
    this.negotiating = true;
    this.negotiateAgain = false;
    try {
      const offer = await this.publish.createOffer();
      await this.publish.setLocalDescription(offer);
      const tracks = [];
      for (const [source, transceiver] of this.senders) {
        if (transceiver.mid) tracks.push({ mid: transceiver.mid, source });
      }
      const local = this.publish.localDescription;
      this.signaling.send({ type: 'signal', pc: 'publish', sdp: { type: local?.type, sdp: local?.sdp }, tracks });
    } catch (e) {
      this.negotiating = false;
      this.fail(`Could not start sending media: ${e}`);
    }
  }

  /**
   * Applies a `signal` message from the server.
   * @param {{pc: string, sdp?: {type: RTCSdpType, sdp: string}, tracks?: TrackLabel[]}} message
   */
  async onSignal(message) {
    if (this.closed || !message.sdp) return;
    if (message.pc === 'publish' && message.sdp.type === 'answer') {
      try {
        await this.publish.setRemoteDescription(message.sdp);
      } catch (e) {
        this.fail(`The server's answer was refused: ${e}`);
      }
      this.negotiating = false;
      if (this.negotiateAgain) await this.negotiate();
    } else if (message.pc === 'subscribe' && message.sdp.type === 'offer') {
      const offer = message.sdp;
      const labels = message.tracks ?? [];
      this.subscribeQueue = this.subscribeQueue.then(() => this.applySubscribeOffer(offer, labels));
      await this.subscribeQueue;
    }
  }

  /**
   * @param {RTCSessionDescriptionInit} offer
   * @param {TrackLabel[]} labels
   */
  async applySubscribeOffer(offer, labels) {
    if (this.closed) return;
    try {
      this.labels = new Map(labels.map((t) => [t.mid, t]));
      await this.subscribe.setRemoteDescription(offer);
      const answer = await this.subscribe.createAnswer();
      await this.subscribe.setLocalDescription(answer);
      const local = this.subscribe.localDescription;
      this.signaling.send({ type: 'signal', pc: 'subscribe', sdp: { type: local?.type, sdp: local?.sdp } });
      this.reconcile();
    } catch (e) {
      this.fail(`Could not receive the others' media: ${e}`);
    }
  }

  /** Announces new remote tracks and withdraws the ones no longer offered. */
  reconcile() {
    for (const transceiver of this.subscribe.getTransceivers()) {
      const mid = transceiver.mid;
      if (!mid) continue;
      const label = this.labels.get(mid);
      const live = label && transceiver.currentDirection !== 'inactive' && !transceiver.stopped;
      let known = this.remote.get(mid);
      // The server recycles m-lines: a line may carry someone else's track
      // now (it normally turns inactive in between, but do not rely on it).
      if (live && known && (known.participantId !== label.participant_id || known.source !== label.source)) {
        this.remote.delete(mid);
        this.dispatchEvent(new CustomEvent('remote-track-removed', { detail: known }));
        known = undefined;
      }
      if (live && !known) {
        const remote = {
          mid,
          participantId: label.participant_id,
          source: label.source,
          kind: label.kind,
          track: transceiver.receiver.track,
          receiver: transceiver.receiver,
        };
        this.remote.set(mid, remote);
        this.dispatchEvent(new CustomEvent('remote-track', { detail: remote }));
      } else if (!live && known) {
        this.remote.delete(mid);
        this.dispatchEvent(new CustomEvent('remote-track-removed', { detail: known }));
      }
    }
  }

  /** @param {string} message */
  fail(message) {
    console.warn(message);
    this.dispatchEvent(new CustomEvent('error', { detail: { message } }));
  }

  /**
   * Numbers a person (or a test) can check: per incoming track, whose it
   * is, frames decoded and packets received, and how well it survives the
   * network: freezes, concealed audio, NACKs sent, the jitter buffer's
   * delay (seconds, summed over what it emitted) and the codec in use.
   */
  async stats() {
    const inbound = inboundStats(await this.subscribe.getStats()).map((entry) => {
      const label = entry.mid ? this.labels.get(entry.mid) : undefined;
      return { ...entry, participantId: label?.participant_id, source: label?.source };
    });
    return { inbound, publishState: this.publish.connectionState, subscribeState: this.subscribe.connectionState };
  }

  /** Closes both connections (tracks are the caller's to stop). */
  close() {
    this.closed = true;
    clearInterval(this.pathTimer);
    for (const { timer } of this.recovering.values()) clearTimeout(timer);
    this.publish.close();
    this.subscribe.close();
    this.remote.clear();
  }
}
