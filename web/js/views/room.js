// @ts-check
/**
 * The meeting room: tiles, controls, chat and participants, the reconnect
 * banner, and leaving. State lives in one `Room` object; the DOM is updated
 * in place as events arrive.
 */
import { api } from '../api.js';
import { MediaSession } from '../media.js';
import { SignalingClient } from '../signaling.js';
import { openDevices, stopStream } from '../devices.js';
import { clock, h, icon, replace, toast } from '../dom.js';
import { ChatPanel } from './chat.js';
import { TrackViews } from '../trackview.js';

/** @typedef {{audio: boolean, video: boolean, screen: boolean}} MediaFlags */
/** @typedef {{id: string, user_id: number, display_name: string, avatar_url: string, media: MediaFlags, role: 'host'|'participant'}} Participant */
/** @typedef {import('./prejoin.js').JoinChoice} JoinChoice */

/** Tiles per page in the grid before paging. */
const PAGE_SIZE = 16;
/** Where the chosen layout (grid or speaker view) is remembered. */
const LAYOUT_KEY = 'zync.layout';
/** Level (0–100, from the server's `active-speakers`) from which a
 * participant's tile shows the speaking ring. */
const SPEAKING = 10;

/**
 * @param {HTMLElement} root
 * @param {{me: import('../api.js').Me, navigate: (path: string) => void}} app
 * @param {import('../api.js').Meeting} meeting
 * @param {JoinChoice} choice
 * @param {(reason: 'left'|'ended'|'error', message?: string) => void} onEnd
 */
export function renderRoom(root, app, meeting, choice, onEnd) {
  const room = new Room(root, app, meeting, choice, onEnd);
  room.start();
  return () => room.destroy();
}

class Tile {
  /**
   * @param {string} key
   * @param {string} label accessible name
   * @param {string} name shown name
   * @param {string} avatarUrl
   * @param {{self?: boolean, screen?: boolean}} kind
   */
  constructor(key, label, name, avatarUrl, kind) {
    this.key = key;
    this.video = /** @type {HTMLVideoElement} */ (h('video', { autoplay: true, playsinline: true }));
    this.video.muted = true; // Sound plays from separate audio elements.
    this.avatar = /** @type {HTMLImageElement} */ (h('img', { class: 'avatar tile-avatar', src: avatarUrl, alt: '' }));
    this.nameEl = h('span', {}, name);
    /** The remote camera track, kept while the camera is off. @type {MediaStreamTrack|null} */
    this.track = null;
    this.el = h('div', {
      class: `tile${kind.self ? ' self' : ''}${kind.screen ? ' screen' : ''}`,
      role: 'group', 'aria-label': label, 'data-video': 'off', 'data-audio': 'on',
    }, this.video, this.avatar,
      h('div', { class: 'tile-label' }, h('span', { class: 'muted', title: 'Microphone muted', 'aria-label': 'Microphone muted', role: 'img' }, icon('micOff')), this.nameEl));
  }

  /** @param {MediaStreamTrack|null} track */
  setVideo(track) {
    this.video.srcObject = track ? new MediaStream([track]) : null;
    this.el.dataset.video = track ? 'on' : 'off';
    if (track) this.video.play().catch(() => {});
  }

  /** @param {string} name @param {string} label */
  rename(name, label) {
    this.nameEl.textContent = name;
    this.el.setAttribute('aria-label', label);
  }
}

class Room {
  /**
   * @param {HTMLElement} root
   * @param {{me: import('../api.js').Me, navigate: (path: string) => void}} app
   * @param {import('../api.js').Meeting} meeting
   * @param {JoinChoice} choice
   * @param {(reason: 'left'|'ended'|'error', message?: string) => void} onEnd
   */
  constructor(root, app, meeting, choice, onEnd) {
    this.root = root;
    this.app = app;
    this.meeting = meeting;
    this.choice = choice;
    this.onEnd = onEnd;
    this.signaling = new SignalingClient();
    /** @type {MediaSession|null} */
    this.media = null;
    /** TURN servers for the peer connections, and when their credentials
     * expire (ms since the epoch; 0: unknown). @type {RTCIceServer[]} */
    this.iceServers = [];
    this.iceServersExpire = 0;
    /** @type {string|null} */
    this.selfId = null;
    /** Whether we are a host (from `existing-users`). */
    this.isHost = false;
    /** Whether newcomers wait in the lobby. */
    this.locked = false;
    /** Hosts: who waits in the lobby. @type {Participant[]} */
    this.waiting = [];
    /** @type {Map<string, Participant>} */
    this.participants = new Map();
    /** @type {Map<string, Tile>} by `${participantId}:camera|screen` */
    this.tiles = new Map();
    /** @type {Map<string, {el: HTMLAudioElement, receiver: RTCRtpReceiver, participantId: string}>} by mid */
    this.audio = new Map();
    /** Local tracks we send. */
    this.local = {
      /** @type {MediaStreamTrack|null} */ microphone: choice.stream?.getAudioTracks()[0] ?? null,
      /** @type {MediaStreamTrack|null} */ camera: choice.stream?.getVideoTracks()[0] ?? null,
      /** @type {MediaStream|null} */ screen: null,
    };
    this.flags = { audio: choice.audio && !!this.local.microphone, video: choice.video && !!this.local.camera, screen: false };
    // The pre-join screen mutes by disabling the track; in the room, muting
    // takes the track off the sender instead, so the track itself stays on.
    if (this.local.microphone) this.local.microphone.enabled = true;
    this.page = 0;
    /** @type {'chat'|'people'|null} */
    this.panel = null;
    this.ended = false;
    /** @type {(() => void)[]} */
    this.cleanups = [];
    /** Joined but `existing-users` not yet received. */
    this.joining = false;
    /** The server's latest `active-speakers`: level by participant id,
     * the dominant speaker first. @type {Map<string, number>} */
    this.speakers = new Map();
    /** Camera tile keys in the order the grid pages them: the most recent
     * speakers are moved onto the first page (last-N). @type {string[]} */
    this.order = [];
    /** When each participant last led `active-speakers`. @type {Map<string, number>} */
    this.lastSpoke = new Map();
    /** The remote participant shown large in speaker view. @type {string|null} */
    this.featured = null;
    /** @type {'grid'|'speaker'} */
    this.viewMode = localStorage.getItem(LAYOUT_KEY) === 'speaker' ? 'speaker' : 'grid';
    this.pageSize = PAGE_SIZE;
    /** What we show of others' video, reported to the server. */
    this.views = new TrackViews((message) => this.signaling.send(message));
    this.cleanups.push(() => this.views.close());
    this.build();
  }

  build() {
    const control = (/** @type {string} */ label, /** @type {any} */ iconName, /** @type {string} */ cls, /** @type {() => void} */ onclick, /** @type {string} */ shortcut = '') =>
      h('button', { class: `control ${cls}`, type: 'button', 'aria-label': label, title: shortcut ? `${label} (${shortcut})` : label, onclick }, icon(iconName));
    this.micButton = control('Microphone', 'mic', 'toggle', () => this.toggleMic(), 'Ctrl+D');
    this.camButton = control('Camera', 'cam', 'toggle', () => this.toggleCamera(), 'Ctrl+E');
    this.shareButton = control('Share screen', 'screen', 'share', () => this.toggleScreen());
    this.unread = h('span', { class: 'badge', id: 'unread-count', hidden: true, 'aria-hidden': 'true' });
    this.unreadText = h('span', { class: 'visually-hidden', id: 'unread-text' });
    this.chatButton = control('Chat', 'chat', 'panel', () => this.togglePanel('chat'));
    this.chatButton.setAttribute('aria-describedby', 'unread-text');
    this.chatButton.append(this.unread, this.unreadText);
    this.peopleButton = control('Participants', 'people', 'panel', () => this.togglePanel('people'));
    this.peopleCount = h('span', { class: 'badge', 'aria-hidden': 'true' }, '1');
    this.peopleButton.append(this.peopleCount);
    this.lobbyBadge = h('span', { class: 'badge lobby-badge', role: 'status', 'aria-label': 'People waiting to join', hidden: true }, '0');
    this.peopleButton.append(this.lobbyBadge);
    this.layoutButton = control('Speaker view', 'speaker', 'layout', () => this.setViewMode(this.viewMode === 'speaker' ? 'grid' : 'speaker'));
    const copyButton = control('Copy link', 'link', '', () => this.copyLink());
    const leaveButton = control('Leave', 'leave', 'leave', () => this.leave());

    this.grid = h('div', { class: 'grid', 'aria-label': 'Participants', role: 'region' });
    this.pager = h('div', { class: 'pager', hidden: true });
    this.stage = h('section', { class: 'stage', 'aria-label': 'Meeting stage' }, this.grid, this.pager);
    this.chat = new ChatPanel(this.meeting.slug, (text) => this.sendChat(text), () => this.togglePanel(null));
    this.peopleList = h('ul', { class: 'people', 'aria-label': 'People in the meeting' });
    this.peoplePanel = h('aside', { class: 'side', 'aria-label': 'Participants panel', hidden: true },
      h('div', { class: 'side-header' }, h('h2', {}, 'People'),
        h('button', { class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Close participants', onclick: () => this.togglePanel(null) }, icon('close'))),
      h('div', { class: 'side-actions' },
        this.lockButton = h('button', { class: 'btn btn-small', type: 'button', hidden: true, 'aria-pressed': 'false', onclick: () => this.signaling.send({ type: 'lock-meeting', locked: !this.locked }) }, 'Lock meeting'),
        this.muteAllButton = h('button', { class: 'btn btn-small', type: 'button', hidden: true, onclick: () => this.signaling.send({ type: 'mute-all' }) }, 'Mute all')),
      this.lobbyBox = h('section', { class: 'lobby', 'aria-label': 'Waiting to join', hidden: true },
        h('h3', {}, 'Waiting to join'),
        this.lobbyList = h('ul', { class: 'people' })),
      this.peopleList,
      this.endButton = h('button', { class: 'btn btn-danger', type: 'button', hidden: true, onclick: () => this.endForAll() }, 'End meeting for all'));
    this.bannerText = h('span', {}, 'Connection lost. Reconnecting…');
    this.banner = h('div', { class: 'banner', role: 'alert', hidden: true }, h('div', { class: 'spinner', 'aria-hidden': 'true' }), this.bannerText);
    this.audioBox = h('div', { hidden: true });

    replace(this.root, h('div', { class: 'room' },
      h('header', { class: 'room-header' },
        h('img', { src: '/img/logo.svg', alt: 'Zync', width: 26, height: 26 }),
        h('h1', {}, this.meeting.title || 'Meeting'),
        h('span', { class: 'slug' }, this.meeting.slug),
        h('div', { class: 'spacer' }),
        h('span', { class: 'slug', id: 'clock' }, clock(new Date()))),
      this.banner,
      h('div', { class: 'room-body' }, this.stage, this.chat.el, this.peoplePanel),
      h('nav', { class: 'controls', 'aria-label': 'Meeting controls' },
        this.micButton, this.camButton, this.shareButton, this.layoutButton, this.chatButton, this.peopleButton, copyButton, leaveButton),
      this.audioBox));

    const onKey = (/** @type {KeyboardEvent} */ e) => {
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey) return;
      const key = e.key.toLowerCase();
      if (key === 'd') { e.preventDefault(); this.toggleMic(); }
      if (key === 'e') { e.preventDefault(); this.toggleCamera(); }
    };
    document.addEventListener('keydown', onKey);
    this.cleanups.push(() => document.removeEventListener('keydown', onKey));
    const clockTimer = setInterval(() => {
      const el = document.getElementById('clock');
      if (el) el.textContent = clock(new Date());
    }, 15_000);
    this.cleanups.push(() => clearInterval(clockTimer));
    this.updateControls();
  }

  async start() {
    this.signaling.addEventListener('message', (e) => this.onMessage(/** @type {CustomEvent} */ (e).detail));
    this.signaling.addEventListener('state', (e) => this.onState(/** @type {CustomEvent} */ (e).detail));
    try {
      await Promise.all([this.signaling.connect(), this.refreshIceServers()]);
    } catch (e) {
      this.end('error', e instanceof Error ? e.message : String(e));
      return;
    }
    this.join();
    // For people and tests checking what is received.
    /** @type {any} */ (window).zync = { stats: () => this.media?.stats(), room: this };
  }

  /**
   * Fetches TURN servers and their credentials. Without them the meeting
   * still works wherever the SFU is reachable directly, so a failure is
   * only logged.
   */
  async refreshIceServers() {
    try {
      const answer = await api.iceServers();
      this.iceServers = answer.ice_servers;
      this.iceServersExpire = answer.expires_at * 1000;
    } catch (e) {
      console.warn('no TURN servers:', e);
    }
  }

  /** (Re)joins the meeting on a fresh media session. */
  join() {
    this.media?.close();
    // A rejoin near the credentials' expiry fetches new ones for next time.
    if (this.iceServersExpire && this.iceServersExpire - Date.now() < 3_600_000) this.refreshIceServers();
    this.media = new MediaSession(this.signaling, this.iceServers);
    this.media.addEventListener('remote-track', (e) => this.onRemoteTrack(/** @type {CustomEvent} */ (e).detail));
    this.media.addEventListener('remote-track-removed', (e) => this.onRemoteTrackRemoved(/** @type {CustomEvent} */ (e).detail));
    this.media.addEventListener('error', (e) => toast(/** @type {CustomEvent} */ (e).detail.message, 'error'));
    this.media.addEventListener('connection-lost', () => {
      // ICE restart did not help: start over as a new participant.
      if (this.signaling.state !== 'open' || this.ended) return;
      toast('The media connection was lost. Reconnecting…', 'error');
      this.signaling.send({ type: 'leave-meeting' });
      this.join();
    });
    this.joining = true;
    this.signaling.send({ type: 'join-meeting', slug: this.meeting.slug });
  }

  /** Starts sending our tracks once we are in. */
  async publish() {
    if (!this.media) return;
    if (this.local.microphone) {
      // Muted: the m-line is negotiated, but nothing is sent until unmute.
      await this.media.setTrack('microphone', this.flags.audio ? this.local.microphone : null, { reserve: 'audio' });
    }
    if (this.local.camera && this.flags.video) await this.media.setTrack('camera', this.local.camera);
    const screenTrack = this.local.screen?.getVideoTracks()[0];
    if (screenTrack && screenTrack.readyState === 'live') await this.media.setTrack('screen', screenTrack);
    else this.flags.screen = false;
    this.sendMediaState();
  }

  /** @param {any} message */
  onMessage(message) {
    switch (message.type) {
      case 'existing-users': {
        this.joining = false;
        this.selfId = message.self.id;
        this.isHost = message.self.role === 'host';
        this.locked = message.locked === true;
        this.showHostControls();
        for (const key of [...this.tiles.keys()]) this.removeTile(key);
        this.participants.clear();
        this.addParticipant({ ...message.self, media: this.flags });
        for (const p of message.participants) this.addParticipant(p);
        this.chat.setHistory(message.history);
        if (this.media) this.media.simulcast = message.publishing?.simulcast !== false;
        this.publish();
        this.layout();
        break;
      }
      case 'user-joined':
        this.addParticipant(message.participant);
        this.layout();
        break;
      case 'user-left':
        this.removeParticipant(message.participant_id);
        this.layout();
        break;
      case 'media-state': {
        const p = this.participants.get(message.participant_id);
        if (p && message.participant_id !== this.selfId) {
          p.media = message.media;
          this.updateTileState(p);
          this.renderPeople();
        }
        break;
      }
      case 'publisher-layers':
        this.media?.setActiveLayers(message.source, message.active);
        break;
      case 'active-speakers':
        this.showSpeakers(message.speakers);
        break;
      case 'chat-message':
        this.chat.add(message, this.panel !== 'chat');
        this.updateUnread();
        break;
      case 'signal':
        this.media?.onSignal(message);
        break;
      case 'removed':
        this.end('ended', `${message.by} removed you from this meeting.`);
        break;
      case 'role-changed': {
        const p = this.participants.get(message.participant_id);
        if (p) p.role = message.role;
        if (message.participant_id === this.selfId) {
          this.isHost = message.role === 'host';
          this.showHostControls();
          if (this.isHost) toast('You are now a host of this meeting.');
        }
        this.renderPeople();
        break;
      }
      case 'lobby-waiting':
        this.bannerText.textContent = 'This meeting is locked. Waiting for a host to let you in…';
        this.banner.hidden = false;
        break;
      case 'admitted':
        this.banner.hidden = true;
        toast('A host let you in.');
        this.join();
        break;
      case 'denied':
        this.end('ended', message.by ? `${message.by} did not let you in.` : 'No host is in the meeting to let you in. Try again later.');
        break;
      case 'lobby': {
        const before = new Set(this.waiting.map((p) => p.id));
        this.waiting = message.waiting;
        for (const p of this.waiting) if (!before.has(p.id)) toast(`${p.display_name} is waiting to join.`);
        this.renderLobby();
        break;
      }
      case 'meeting-locked':
        this.locked = message.locked;
        this.showHostControls();
        toast(`${message.by} ${message.locked ? 'locked' : 'unlocked'} the meeting.`);
        break;
      case 'muted-by-host':
        this.mutedByHost(message.by);
        break;
      case 'video-stopped-by-host':
        this.videoStoppedByHost(message.by, message.source);
        break;
      case 'meeting-ended':
        this.end('ended', `${message.by} ended the meeting for everyone.`);
        break;
      case 'error':
        this.onError(message);
        break;
    }
  }

  /** @param {{code: string, message: string}} error */
  onError(error) {
    if (this.joining && error.code === 'removed') {
      this.end('ended', 'A host removed you from this meeting. You can join again once it has ended.');
      return;
    }
    if (this.joining && ['room_full', 'meeting_not_found', 'unavailable'].includes(error.code)) {
      this.end('error', error.code === 'room_full' ? 'This meeting is full.' : error.message);
      return;
    }
    if (error.code === 'not_joined') {
      // A leave that crossed the server's own removal of us: nothing to do.
      console.warn(error.message);
      return;
    }
    if (error.code === 'media_failed') {
      toast('The media connection failed. Reconnecting…', 'error');
      this.join();
      return;
    }
    toast(error.message, 'error');
  }

  /** @param {string} state */
  onState(state) {
    if (this.ended) return;
    if (state === 'logged-out') {
      this.end('error', 'You signed out (here or in another tab). Sign in again to rejoin.');
    } else if (state === 'reconnecting' || state === 'restarting') {
      this.bannerText.textContent = state === 'restarting'
        ? 'Zync is restarting. Rejoining in a moment…'
        : 'Connection lost. Reconnecting…';
      this.banner.hidden = false;
    } else if (state === 'open') {
      this.banner.hidden = true;
      if (this.selfId !== null) {
        // A new connection is a new participant: join again.
        this.join();
      }
    }
  }

  /** @param {Participant} p */
  addParticipant(p) {
    this.participants.set(p.id, p);
    const self = p.id === this.selfId;
    const tile = new Tile(`${p.id}:camera`, self ? `${p.display_name} (you)` : p.display_name, self ? `${p.display_name} (you)` : p.display_name, p.avatar_url, { self });
    this.tiles.set(tile.key, tile);
    if (self) tile.setVideo(this.flags.video ? this.local.camera : null);
    this.updateTileState(p);
    this.renderPeople();
  }

  /** @param {string} id */
  removeParticipant(id) {
    this.participants.delete(id);
    this.removeTile(`${id}:camera`);
    this.removeTile(`${id}:screen`);
    for (const [mid, a] of this.audio) {
      if (a.participantId === id) {
        a.el.remove();
        this.audio.delete(mid);
      }
    }
    this.renderPeople();
  }

  /** @param {string} key */
  removeTile(key) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    this.views.unwatch(key);
    tile.setVideo(null);
    tile.el.remove();
    this.tiles.delete(key);
  }

  /** @param {Participant} p */
  updateTileState(p) {
    const tile = this.tiles.get(`${p.id}:camera`);
    if (!tile) return;
    tile.el.dataset.audio = p.media.audio ? 'on' : 'off';
    if (p.id !== this.selfId && !p.media.video) tile.setVideo(null);
    if (p.id !== this.selfId && p.media.video && tile.track) tile.setVideo(tile.track);
  }

  /** @param {import('../media.js').RemoteTrack} remote */
  onRemoteTrack(remote) {
    const p = this.participants.get(remote.participantId);
    if (remote.kind === 'audio') {
      const el = /** @type {HTMLAudioElement} */ (h('audio', { autoplay: true }));
      el.srcObject = new MediaStream([remote.track]);
      if (this.choice.speakerId && 'setSinkId' in el) /** @type {any} */ (el).setSinkId(this.choice.speakerId).catch(() => {});
      this.audioBox.append(el);
      el.play().catch(() => {});
      this.audio.set(remote.mid, { el, receiver: remote.receiver, participantId: remote.participantId });
      return;
    }
    if (!p) return;
    if (remote.source === 'screen') {
      const key = `${p.id}:screen`;
      this.removeTile(key);
      const tile = new Tile(key, `${p.display_name}'s screen`, `${p.display_name}'s screen`, p.avatar_url, { screen: true });
      this.tiles.set(key, tile);
      tile.setVideo(remote.track);
      this.views.watch(key, p.id, 'screen', tile.video);
    } else {
      const tile = this.tiles.get(`${p.id}:camera`);
      if (!tile) return;
      tile.track = remote.track;
      this.views.watch(tile.key, p.id, 'camera', tile.video);
      if (p.media.video || !this.announcedMedia(p)) tile.setVideo(remote.track);
    }
    this.layout();
  }

  /** Whether `p` has announced any media yet. Until then a video track
   * that arrives is shown (its `media-state` may simply not be here yet).
   * @param {Participant} p */
  announcedMedia(p) {
    return p.media.audio || p.media.video || p.media.screen;
  }

  /** @param {import('../media.js').RemoteTrack} remote */
  onRemoteTrackRemoved(remote) {
    if (remote.kind === 'audio') {
      this.audio.get(remote.mid)?.el.remove();
      this.audio.delete(remote.mid);
      return;
    }
    if (remote.source === 'screen') {
      this.removeTile(`${remote.participantId}:screen`);
    } else {
      const tile = this.tiles.get(`${remote.participantId}:camera`);
      if (tile) {
        this.views.unwatch(tile.key);
        tile.track = null;
        tile.setVideo(null);
      }
    }
    this.layout();
  }

  /** Places tiles: a spotlight for a shared screen; otherwise, in speaker
   * view, the active speaker large beside a filmstrip of the others, or a
   * grid that adapts to the count and pages past 16, the most recent
   * speakers on its first page. */
  layout() {
    const screens = [...this.tiles.values()].filter((t) => t.key.endsWith(':screen'));
    const cameras = this.cameraOrder().map((key) => /** @type {Tile} */ (this.tiles.get(key)));
    this.peopleCount.textContent = String(this.participants.size);
    const featured = this.featuredTile(cameras);
    if (screens.length || (this.viewMode === 'speaker' && featured)) {
      // The most recent share takes the spotlight (tiles keep the order
      // they were added in); earlier ones join the filmstrip. Without a
      // share, the active speaker does.
      const large = screens.length ? screens[screens.length - 1] : /** @type {Tile} */ (featured);
      const rest = [...screens, ...cameras].filter((t) => t !== large);
      const spotlight = h('div', { class: 'spotlight' }, large.el);
      const strip = h('div', { class: 'filmstrip', role: 'list', 'aria-label': 'Cameras' }, ...rest.map((t) => t.el));
      replace(this.grid, h('div', { class: 'spotlight-layout' }, spotlight, strip));
      this.grid.dataset.cols = '1';
      this.grid.dataset.layout = screens.length ? 'spotlight' : 'speaker';
      this.pager.hidden = true;
      this.views.setShown(new Set(this.tiles.keys()));
      return;
    }
    this.grid.dataset.layout = 'grid';
    const size = this.pageSize;
    const pages = Math.max(1, Math.ceil(cameras.length / size));
    this.page = Math.min(this.page, pages - 1);
    const shown = cameras.slice(this.page * size, (this.page + 1) * size);
    const n = shown.length;
    this.grid.dataset.cols = String(n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4);
    this.grid.dataset.count = String(n);
    replace(this.grid, ...shown.map((t) => t.el));
    this.views.setShown(new Set(shown.map((t) => t.key)));
    this.pager.hidden = pages <= 1;
    if (pages > 1) {
      replace(this.pager,
        h('button', { class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Previous page', disabled: this.page === 0, onclick: () => { this.page -= 1; this.layout(); } }, icon('chevronLeft')),
        `Page ${this.page + 1} of ${pages}`,
        h('button', { class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Next page', disabled: this.page >= pages - 1, onclick: () => { this.page += 1; this.layout(); } }, icon('chevronRight')));
    }
  }

  /** Camera tile keys in paging order: the order people arrived in, except
   * that whoever speaks while off the first page takes the place of the
   * first page's longest-silent tile (last-N), so the page does not
   * reshuffle on every word. */
  cameraOrder() {
    const cameras = [...this.tiles.keys()].filter((k) => k.endsWith(':camera'));
    this.order = this.order.filter((k) => this.tiles.has(k));
    for (const key of cameras) if (!this.order.includes(key)) this.order.push(key);
    return this.order;
  }

  /** Brings a speaker onto the first page of the grid; true if the order
   * changed. @param {string} id */
  promoteSpeaker(id) {
    const order = this.cameraOrder();
    const key = `${id}:camera`;
    const at = order.indexOf(key);
    if (at < this.pageSize) return false;
    const silent = (/** @type {string} */ k) => this.lastSpoke.get(k.split(':')[0]) ?? -1;
    const self = `${this.selfId}:camera`;
    let swap = -1;
    for (let i = 0; i < Math.min(this.pageSize, order.length); i++) {
      if (order[i] === self) continue;
      if (swap < 0 || silent(order[i]) < silent(order[swap])) swap = i;
    }
    if (swap < 0) return false;
    [order[swap], order[at]] = [order[at], order[swap]];
    return true;
  }

  /** The camera tile speaker view shows large: the latest remote active
   * speaker, else the first remote camera. @param {Tile[]} cameras */
  featuredTile(cameras) {
    const remote = cameras.filter((t) => !t.key.startsWith(`${this.selfId}:`));
    return remote.find((t) => t.key === `${this.featured}:camera`) ?? remote[0] ?? null;
  }

  /** Switches between grid and speaker view (remembered on this device).
   * @param {'grid'|'speaker'} mode */
  setViewMode(mode) {
    this.viewMode = mode;
    localStorage.setItem(LAYOUT_KEY, mode);
    this.layoutButton.setAttribute('aria-pressed', String(mode === 'speaker'));
    this.layout();
  }

  renderPeople() {
    const people = [...this.participants.values()];
    replace(this.peopleList, ...people.map((p) => h('li', {},
      h('img', { class: 'avatar', src: p.avatar_url, alt: '' }),
      h('span', { class: 'name' }, p.id === this.selfId ? `${p.display_name} (you)` : p.display_name),
      p.role === 'host' ? h('span', { class: 'role-badge' }, 'Host') : null,
      this.hostActions(p),
      h('span', { class: 'state' },
        h('span', { class: p.media.audio ? '' : 'off', role: 'img', 'aria-label': p.media.audio ? 'Microphone on' : 'Microphone muted' }, icon(p.media.audio ? 'mic' : 'micOff')),
        h('span', { class: p.media.video ? '' : 'off', role: 'img', 'aria-label': p.media.video ? 'Camera on' : 'Camera off' }, icon(p.media.video ? 'cam' : 'camOff'))))));
  }

  /** Shows who is speaking, from the server's `active-speakers` (the
   * same for everyone in the room, our own microphone included).
   * @param {{participant_id: string, level: number}[]} speakers */
  showSpeakers(speakers) {
    this.speakers = new Map(speakers.map((s) => [s.participant_id, s.level]));
    // The server only moves dominance after someone has clearly spoken
    // for a while, so the layout follows it whatever the level now (it
    // stays first, fading, while the room is silent).
    const [dominant] = speakers;
    if (dominant) {
      this.lastSpoke.set(dominant.participant_id, performance.now());
      let moved = this.promoteSpeaker(dominant.participant_id);
      if (dominant.participant_id !== this.selfId && this.featured !== dominant.participant_id) {
        this.featured = dominant.participant_id;
        moved = moved || this.viewMode === 'speaker';
      }
      if (moved) this.layout();
    }
    for (const tile of this.tiles.values()) {
      const id = tile.key.split(':')[0];
      const speaking = tile.key.endsWith(':camera') && (this.speakers.get(id) ?? 0) >= SPEAKING;
      tile.el.classList.toggle('speaking', speaking);
    }
  }

  updateControls() {
    const set = (/** @type {HTMLElement} */ b, /** @type {boolean} */ on, /** @type {any} */ onIcon, /** @type {any} */ offIcon) => {
      b.setAttribute('aria-pressed', String(on));
      b.querySelector('svg')?.replaceWith(icon(on ? onIcon : offIcon));
    };
    set(this.micButton, this.flags.audio, 'mic', 'micOff');
    set(this.camButton, this.flags.video, 'cam', 'camOff');
    this.layoutButton.setAttribute('aria-pressed', String(this.viewMode === 'speaker'));
    set(this.shareButton, this.flags.screen, 'screen', 'screen');
    this.chatButton.setAttribute('aria-pressed', String(this.panel === 'chat'));
    this.peopleButton.setAttribute('aria-pressed', String(this.panel === 'people'));
  }

  sendMediaState() {
    this.signaling.send({ type: 'media-state', ...this.flags });
    const self = this.selfId ? this.participants.get(this.selfId) : null;
    if (self) {
      self.media = { ...this.flags };
      this.updateTileState(self);
      this.renderPeople();
    }
    this.updateControls();
  }

  async toggleMic() {
    if (!this.local.microphone) {
      const { stream, error } = await openDevices({ audio: true, video: false, microphoneId: this.choice.microphoneId });
      if (!stream) return toast(error ?? 'No microphone', 'error');
      this.local.microphone = stream.getAudioTracks()[0];
      this.flags.audio = true;
      await this.media?.setTrack('microphone', this.local.microphone);
    } else {
      // Muting stops the packets (not just their sound): in a large room
      // every muted microphone would otherwise still cost 50 packets a
      // second in and as many out per listener.
      this.flags.audio = !this.flags.audio;
      await this.media?.setTrack('microphone', this.flags.audio ? this.local.microphone : null);
    }
    this.sendMediaState();
  }

  /** A host turned our microphone off (the server already stopped
   * forwarding it): stop sending too, and say so. We may unmute.
   * @param {string} by */
  async mutedByHost(by) {
    if (this.flags.audio) {
      this.flags.audio = false;
      await this.media?.setTrack('microphone', null);
      this.sendMediaState();
    }
    toast(`${by} muted your microphone. Unmute when you want to speak.`);
  }

  /** A host turned our camera or shared screen off (the server already
   * stopped forwarding it): stop it here too, and say so.
   * @param {string} by @param {'camera'|'screen'} source */
  async videoStoppedByHost(by, source) {
    if (source === 'screen') {
      if (this.flags.screen) await this.stopScreen();
      toast(`${by} stopped your screen share.`);
    } else {
      if (this.flags.video) await this.toggleCamera();
      toast(`${by} turned your camera off. Turn it on when you want to be seen.`);
    }
  }

  async toggleCamera() {
    if (this.flags.video) {
      this.flags.video = false;
      await this.media?.setTrack('camera', null);
      this.local.camera?.stop(); // Turns the camera light off.
      this.local.camera = null;
    } else {
      const { stream, error } = await openDevices({ audio: false, video: true, cameraId: this.choice.cameraId });
      const track = stream?.getVideoTracks()[0];
      if (!track) return toast(error ?? 'No camera', 'error');
      this.local.camera = track;
      this.flags.video = true;
      await this.media?.setTrack('camera', track);
    }
    const self = this.selfId ? this.tiles.get(`${this.selfId}:camera`) : null;
    self?.setVideo(this.flags.video ? this.local.camera : null);
    this.sendMediaState();
  }

  async toggleScreen() {
    if (this.flags.screen) return this.stopScreen();
    if (!navigator.mediaDevices?.getDisplayMedia) return toast('This browser cannot share the screen.', 'error');
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    } catch (e) {
      if (e instanceof DOMException && e.name === 'NotAllowedError') return;
      return toast(`Could not share the screen: ${e instanceof Error ? e.message : e}`, 'error');
    }
    const track = stream.getVideoTracks()[0];
    this.local.screen = stream;
    this.flags.screen = true;
    // The browser's own "Stop sharing" button ends the track.
    track.addEventListener('ended', () => this.stopScreen());
    await this.media?.setTrack('screen', track);
    const selfScreen = new Tile(`${this.selfId}:screen`, 'Your screen', 'Your screen', this.app.me.avatar_url, { screen: true });
    selfScreen.setVideo(track);
    this.tiles.set(selfScreen.key, selfScreen);
    this.layout();
    this.sendMediaState();
  }

  async stopScreen() {
    if (!this.flags.screen) return;
    this.flags.screen = false;
    stopStream(this.local.screen);
    this.local.screen = null;
    this.removeTile(`${this.selfId}:screen`);
    this.layout();
    this.sendMediaState();
    await this.media?.setTrack('screen', null);
  }

  /** @param {'chat'|'people'|null} panel */
  togglePanel(panel) {
    this.panel = this.panel === panel ? null : panel;
    this.chat.el.hidden = this.panel !== 'chat';
    this.peoplePanel.hidden = this.panel !== 'people';
    if (this.panel === 'chat') {
      this.chat.opened();
      this.updateUnread();
    }
    this.updateControls();
  }

  updateUnread() {
    const n = this.chat.unread;
    this.unread.hidden = n === 0;
    this.unread.textContent = n > 99 ? '99+' : String(n);
    this.unreadText.textContent = n ? `${n} unread ${n === 1 ? 'message' : 'messages'}` : '';
  }

  /** @param {string} text */
  sendChat(text) {
    if (!this.signaling.send({ type: 'chat-message', text })) {
      toast('Not connected; the message was not sent.', 'error');
      return false;
    }
    return true;
  }

  async copyLink() {
    const url = this.meeting.url || `${location.origin}/${this.meeting.slug}`;
    try {
      await navigator.clipboard.writeText(url);
      toast('Meeting link copied');
    } catch {
      toast(`Share this link: ${url}`);
    }
  }

  leave() {
    this.signaling.send({ type: 'leave-meeting' });
    this.end('left');
  }

  /** Shows or hides what only hosts get, as the role and lock stand. */
  showHostControls() {
    this.endButton.hidden = !this.isHost;
    this.muteAllButton.hidden = !this.isHost;
    this.lockButton.hidden = !this.isHost;
    this.lockButton.textContent = this.locked ? 'Unlock meeting' : 'Lock meeting';
    this.lockButton.setAttribute('aria-pressed', String(this.locked));
    this.renderLobby();
    this.renderPeople();
  }

  /** Hosts: who waits in the lobby, with Admit and Deny, at the top of the
   * Participants panel, and their number on its button. */
  renderLobby() {
    const waiting = this.isHost ? this.waiting : [];
    this.lobbyBox.hidden = waiting.length === 0;
    this.lobbyBadge.hidden = waiting.length === 0;
    this.lobbyBadge.textContent = String(waiting.length);
    replace(this.lobbyList, ...waiting.map((p) => h('li', {},
      h('img', { class: 'avatar', src: p.avatar_url, alt: '' }),
      h('span', { class: 'name' }, p.display_name),
      h('button', { class: 'btn btn-primary btn-small', type: 'button', 'aria-label': `Admit ${p.display_name}`, onclick: () => this.signaling.send({ type: 'admit', participant_id: p.id }) }, 'Admit'),
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', 'aria-label': `Deny ${p.display_name}`, onclick: () => this.signaling.send({ type: 'deny', participant_id: p.id }) }, 'Deny'))));
  }

  /** For hosts, a menu of what they may do to `p` (nothing for others,
   * or for ourselves).
   * @param {Participant} p */
  hostActions(p) {
    if (!this.isHost || p.id === this.selfId) return null;
    /** @type {[string, () => void][]} */
    const actions = [];
    const send = (/** @type {object} */ message) => () => this.signaling.send(message);
    if (p.media.audio) actions.push(['Mute', send({ type: 'mute-participant', participant_id: p.id })]);
    if (p.media.video) actions.push(['Stop camera', send({ type: 'stop-video', participant_id: p.id, source: 'camera' })]);
    if (p.media.screen) actions.push(['Stop sharing', send({ type: 'stop-video', participant_id: p.id, source: 'screen' })]);
    if (p.role !== 'host') actions.push(['Make co-host', send({ type: 'make-host', participant_id: p.id })]);
    if (p.role !== 'host') actions.push(['Remove from meeting', () => this.askToRemove(p)]);
    if (actions.length === 0) return null;
    const menu = h('div', { class: 'menu', role: 'menu', 'aria-label': `Actions for ${p.display_name}`, hidden: true },
      ...actions.map(([label, act]) => h('button', { type: 'button', role: 'menuitem', onclick: () => { menu.hidden = true; toggle.setAttribute('aria-expanded', 'false'); act(); } }, label)));
    const toggle = h('button', {
      class: 'btn btn-ghost btn-icon btn-small', type: 'button', 'aria-label': `Actions for ${p.display_name}`, 'aria-haspopup': 'menu', 'aria-expanded': 'false',
      onclick: () => {
        menu.hidden = !menu.hidden;
        toggle.setAttribute('aria-expanded', String(!menu.hidden));
        if (!menu.hidden) /** @type {HTMLElement|null} */ (menu.querySelector('button'))?.focus();
      },
    }, '⋯');
    menu.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { menu.hidden = true; toggle.setAttribute('aria-expanded', 'false'); toggle.focus(); }
    });
    return h('span', { class: 'person-actions' }, toggle, menu);
  }

  /** Hosts: takes someone out of the meeting, after asking.
   * @param {Participant} p */
  askToRemove(p) {
    if (!confirm(`Remove ${p.display_name} from the meeting? They cannot come back until it ends.`)) return;
    this.signaling.send({ type: 'remove-participant', participant_id: p.id });
  }

  /** Hosts: ends the meeting for everyone, after asking. */
  endForAll() {
    if (!confirm('End the meeting for everyone?')) return;
    this.signaling.send({ type: 'end-meeting' });
  }

  /** @param {'left'|'ended'|'error'} reason @param {string} [message] */
  end(reason, message) {
    if (this.ended) return;
    this.ended = true;
    this.destroy();
    this.onEnd(reason, message);
  }

  destroy() {
    this.ended = true;
    this.cleanups.forEach((f) => f());
    this.cleanups = [];
    this.media?.close();
    this.signaling.close();
    stopStream(this.local.screen);
    this.local.microphone?.stop();
    this.local.camera?.stop();
    for (const a of this.audio.values()) a.el.remove();
    /** @type {any} */ (window).zync = undefined;
  }
}
