// @ts-check
/**
 * Cameras, microphones and speakers: asking for them, naming the errors a
 * person can act on, and measuring the microphone level.
 */

/** @typedef {{audio: boolean, video: boolean, cameraId?: string, microphoneId?: string, speakerId?: string}} DeviceChoice */

/**
 * Opens camera and/or microphone. Never throws: returns the stream (or
 * null) and a message explaining what went wrong.
 * @param {DeviceChoice} choice
 * @returns {Promise<{stream: MediaStream|null, error: string|null}>}
 */
export async function openDevices(choice) {
  if (!choice.audio && !choice.video) return { stream: null, error: null };
  if (!navigator.mediaDevices?.getUserMedia) {
    return { stream: null, error: 'This browser cannot use a camera or microphone here (a secure https page is needed).' };
  }
  /** @type {MediaStreamConstraints} */
  const constraints = {
    audio: choice.audio ? { deviceId: choice.microphoneId ? { exact: choice.microphoneId } : undefined, echoCancellation: true, noiseSuppression: true } : false,
    video: choice.video ? { deviceId: choice.cameraId ? { exact: choice.cameraId } : undefined, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } } : false,
  };
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
  } catch (e) {
    // Try each device alone: a missing camera should not cost the microphone.
    if (choice.audio && choice.video) {
      const audio = await openDevices({ ...choice, video: false });
      const video = await openDevices({ ...choice, audio: false });
      const tracks = [...(audio.stream?.getTracks() ?? []), ...(video.stream?.getTracks() ?? [])];
      if (tracks.length) return { stream: new MediaStream(tracks), error: audio.error ?? video.error };
    }
    return { stream: null, error: describe(e, choice) };
  }
}

/**
 * @param {unknown} error
 * @param {DeviceChoice} choice
 */
function describe(error, choice) {
  const what = choice.audio && choice.video ? 'camera and microphone' : choice.video ? 'camera' : 'microphone';
  const name = error instanceof DOMException ? error.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Access to your ${what} is blocked. Allow it in the browser's site settings, or join without it: you can still watch, listen and chat.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found. You can still join to watch, listen and chat.`;
    case 'NotReadableError':
      return `Your ${what} is in use by another app or could not be started.`;
    default:
      return `Could not start your ${what}${error instanceof Error ? `: ${error.message}` : ''}.`;
  }
}

/**
 * Lists devices by kind (labels appear once permission was granted).
 * @returns {Promise<{cameras: MediaDeviceInfo[], microphones: MediaDeviceInfo[], speakers: MediaDeviceInfo[]}>}
 */
export async function listDevices() {
  const devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
  return {
    cameras: devices.filter((d) => d.kind === 'videoinput'),
    microphones: devices.filter((d) => d.kind === 'audioinput'),
    speakers: devices.filter((d) => d.kind === 'audiooutput'),
  };
}

/** Shared audio context (browsers limit how many exist). @type {AudioContext|null} */
let context = null;

/**
 * Measures a microphone track's level, 0..1, about 20 times a second.
 * @param {MediaStreamTrack} track
 * @param {(level: number) => void} onLevel
 * @returns {() => void} stops measuring
 */
export function watchLevel(track, onLevel) {
  context ??= new AudioContext();
  if (context.state === 'suspended') context.resume().catch(() => {});
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    if (!track.enabled || track.readyState !== 'live') return onLevel(0);
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    onLevel(Math.min(1, rms * 4));
  }, 50);
  return () => {
    clearInterval(timer);
    source.disconnect();
  };
}

/** Stops every track of a stream. @param {MediaStream|null|undefined} stream */
export function stopStream(stream) {
  stream?.getTracks().forEach((t) => t.stop());
}
