// @ts-check
/**
 * Pre-join: camera preview, microphone level, device choice, and joining
 * with camera or microphone off. Without devices (or permission) one can
 * still join to watch and chat.
 */
import { listDevices, openDevices, stopStream, watchLevel } from '../devices.js';
import { h, icon, replace } from '../dom.js';
import { topbar } from './home.js';

/** @typedef {{stream: MediaStream|null, audio: boolean, video: boolean, cameraId?: string, microphoneId?: string, speakerId?: string}} JoinChoice */

/**
 * @param {HTMLElement} root
 * @param {{me: import('../api.js').Me, logout: () => void}} app
 * @param {import('../api.js').Meeting} meeting
 * @param {JoinChoice|null} previous choices from an earlier join, if any
 * @param {(choice: JoinChoice) => void} onJoin
 * @returns {() => void} cleanup
 */
export function renderPrejoin(root, app, meeting, previous, onJoin) {
  /** @type {JoinChoice} */
  const choice = { stream: null, audio: previous?.audio ?? true, video: previous?.video ?? true, cameraId: previous?.cameraId, microphoneId: previous?.microphoneId, speakerId: previous?.speakerId };
  let stopMeter = () => {};
  let disposed = false;

  const video = /** @type {HTMLVideoElement} */ (h('video', { autoplay: true, muted: true, playsinline: true }));
  video.muted = true;
  const off = h('div', { class: 'preview-off' });
  const micButton = h('button', { class: 'control toggle', type: 'button', 'aria-label': 'Microphone', title: 'Microphone', onclick: () => toggle('audio') });
  const camButton = h('button', { class: 'control toggle', type: 'button', 'aria-label': 'Camera', title: 'Camera', onclick: () => toggle('video') });
  const meterBar = h('div');
  const meter = h('div', { class: 'meter', role: 'meter', 'aria-label': 'Microphone level', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 }, meterBar);
  const notice = h('div', { class: 'notice notice-warn', role: 'alert', hidden: true });
  const cameraSelect = /** @type {HTMLSelectElement} */ (h('select', { id: 'camera-source', class: 'select', onchange: () => { choice.cameraId = cameraSelect.value; restart(); } }));
  const micSelect = /** @type {HTMLSelectElement} */ (h('select', { id: 'microphone-source', class: 'select', onchange: () => { choice.microphoneId = micSelect.value; restart(); } }));
  const speakerSelect = /** @type {HTMLSelectElement} */ (h('select', { id: 'speaker', class: 'select', onchange: () => { choice.speakerId = speakerSelect.value; } }));
  // Enabled once the devices answered, so nobody joins half set up.
  const joinButton = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn btn-primary', type: 'button', onclick: join, disabled: true, 'aria-label': 'Join now' }, 'Getting ready…'));
  const who = meeting.participant_count > 0
    ? `${meeting.participant_count} ${meeting.participant_count === 1 ? 'person is' : 'people are'} in this meeting.`
    : 'Nobody is here yet.';

  replace(root,
    topbar(app),
    h('div', { class: 'prejoin' },
      h('div', { class: 'stack' },
        h('div', { class: 'preview' }, video, off, h('div', { class: 'preview-controls' }, micButton, camButton)),
        meter),
      h('div', { class: 'card stack' },
        h('h1', {}, meeting.title || 'Ready to join?'),
        h('div', { class: 'hint' }, `${meeting.slug} · ${who}`),
        notice,
        h('div', { class: 'field' }, h('label', { for: 'camera-source' }, 'Camera source'), cameraSelect),
        h('div', { class: 'field' }, h('label', { for: 'microphone-source' }, 'Microphone source'), micSelect),
        h('div', { class: 'field' }, h('label', { for: 'speaker' }, 'Speaker'), speakerSelect),
        joinButton)));

  start();
  return dispose;

  async function start() {
    const { stream, error } = await openDevices({ ...choice, audio: true, video: true });
    if (disposed) return stopStream(stream);
    choice.stream = stream;
    const hasAudio = !!stream?.getAudioTracks().length;
    const hasVideo = !!stream?.getVideoTracks().length;
    if (!hasAudio) choice.audio = false;
    if (!hasVideo) choice.video = false;
    micButton.toggleAttribute('disabled', !hasAudio);
    camButton.toggleAttribute('disabled', !hasVideo);
    if (error) {
      notice.textContent = error;
      notice.hidden = false;
    }
    await fillDevices();
    apply();
    joinButton.disabled = false;
    joinButton.textContent = 'Join now';
  }

  async function restart() {
    stopStream(choice.stream);
    stopMeter();
    const { stream, error } = await openDevices({ ...choice, audio: true, video: true });
    if (disposed) return stopStream(stream);
    choice.stream = stream;
    notice.hidden = !error;
    notice.textContent = error ?? '';
    apply();
  }

  async function fillDevices() {
    const { cameras, microphones, speakers } = await listDevices();
    /** @param {HTMLSelectElement} select @param {MediaDeviceInfo[]} devices @param {string} none @param {string|undefined} current */
    const fill = (select, devices, none, current) => {
      replace(select, ...(devices.length ? devices : [null]).map((d, i) =>
        d ? h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${none} ${i + 1}`) : h('option', { value: '' }, `No ${none.toLowerCase()} found`)));
      select.disabled = !devices.length;
    };
    const activeCamera = choice.stream?.getVideoTracks()[0]?.getSettings().deviceId ?? choice.cameraId;
    const activeMic = choice.stream?.getAudioTracks()[0]?.getSettings().deviceId ?? choice.microphoneId;
    fill(cameraSelect, cameras, 'Camera', activeCamera);
    fill(micSelect, microphones, 'Microphone', activeMic);
    fill(speakerSelect, speakers, 'Speaker', choice.speakerId);
    if (!('setSinkId' in HTMLMediaElement.prototype)) speakerSelect.disabled = true;
  }

  /** Shows the current on/off state in the preview and buttons. */
  function apply() {
    const videoTrack = choice.stream?.getVideoTracks()[0];
    const audioTrack = choice.stream?.getAudioTracks()[0];
    if (videoTrack) videoTrack.enabled = choice.video;
    if (audioTrack) audioTrack.enabled = choice.audio;
    video.srcObject = videoTrack && choice.video ? new MediaStream([videoTrack]) : null;
    video.hidden = !(videoTrack && choice.video);
    replace(off, videoTrack && choice.video ? null : h('div', { class: 'stack centered' },
      h('img', { class: 'avatar', src: app.me.avatar_url, alt: '' }),
      videoTrack ? 'Your camera is off' : 'No camera'));
    micButton.setAttribute('aria-pressed', String(choice.audio));
    camButton.setAttribute('aria-pressed', String(choice.video));
    replace(micButton, icon(choice.audio ? 'mic' : 'micOff'));
    replace(camButton, icon(choice.video ? 'cam' : 'camOff'));
    stopMeter();
    if (audioTrack) {
      stopMeter = watchLevel(audioTrack, (level) => {
        meterBar.style.width = `${Math.round(level * 100)}%`;
        meter.setAttribute('aria-valuenow', String(Math.round(level * 100)));
      });
    }
  }

  /** @param {'audio'|'video'} kind */
  function toggle(kind) {
    choice[kind] = !choice[kind];
    apply();
  }

  function join() {
    joinButton.disabled = true;
    stopMeter();
    disposed = true;
    onJoin(choice);
  }

  function dispose() {
    if (!disposed) stopStream(choice.stream);
    disposed = true;
    stopMeter();
  }
}
