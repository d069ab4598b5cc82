// @ts-check
/**
 * Tells the server what this page shows of each remote video track, with
 * `track-view` messages (docs/protocol.md): whether the tile is on screen
 * (on the current page, and the tab visible) and the size, in device
 * pixels, at which the video is drawn. The server forwards nothing for a
 * track off screen and the smallest simulcast layer that covers the size,
 * so a small tile costs a small stream and a paged-out one none.
 *
 * Changes are gathered for a short while and sent once per tile that
 * changed, so resizing the window or laying out a grid anew costs one
 * message per tile, not one per animation frame.
 */

/** How long changes are gathered before they are reported, ms. */
const SETTLE_MS = 200;
/** Sizes are rounded up to this many device pixels (small resizes do not
 * change the layer the server picks). */
const STEP = 32;
/** Assumed aspect of a video that has not drawn a frame yet. */
const DEFAULT_ASPECT = 16 / 9;

/**
 * @typedef {{participant: string, source: string, video: HTMLVideoElement, shown: boolean, sent: string|null}} Watched
 */

export class TrackViews {
  /** @param {(message: Record<string, unknown>) => boolean} send */
  constructor(send) {
    this.send = send;
    /** @type {Map<string, Watched>} by tile key */
    this.tiles = new Map();
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.timer = null;
    this.resize = new ResizeObserver(() => this.schedule());
    this.onVisibility = () => this.schedule();
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  /**
   * Starts reporting on a remote tile's video.
   * @param {string} key the tile's key
   * @param {string} participant the publisher's id
   * @param {'camera'|'screen'} source
   * @param {HTMLVideoElement} video
   */
  watch(key, participant, source, video) {
    const known = this.tiles.get(key);
    if (known?.video === video && known.participant === participant) return;
    if (known) this.unwatch(key);
    this.tiles.set(key, { participant, source, video, shown: true, sent: null });
    this.resize.observe(video);
    // The picture's own size changed (a new layer, a rotated phone).
    video.addEventListener('resize', this.onVisibility);
    this.schedule();
  }

  /** Stops reporting on a tile (it is gone; the server forgets the view
   * with the track). @param {string} key */
  unwatch(key) {
    const known = this.tiles.get(key);
    if (!known) return;
    this.resize.unobserve(known.video);
    known.video.removeEventListener('resize', this.onVisibility);
    this.tiles.delete(key);
  }

  /** Which tiles the layout puts on screen now (the others are paged out).
   * @param {Set<string>} keys */
  setShown(keys) {
    for (const [key, tile] of this.tiles) tile.shown = keys.has(key);
    this.schedule();
  }

  schedule() {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.report();
    }, SETTLE_MS);
  }

  /** Sends a `track-view` for every tile whose view changed. */
  report() {
    const pageVisible = document.visibilityState === 'visible';
    for (const tile of this.tiles.values()) {
      const { width, height } = drawnSize(tile.video);
      const visible = pageVisible && tile.shown && tile.video.isConnected && width > 0 && height > 0;
      const view = visible ? { visible, width, height } : { visible: false, width: 0, height: 0 };
      const said = JSON.stringify(view);
      if (said === tile.sent) continue;
      if (this.send({ type: 'track-view', participant: tile.participant, source: tile.source, ...view })) tile.sent = said;
    }
  }

  close() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.resize.disconnect();
    document.removeEventListener('visibilitychange', this.onVisibility);
    this.tiles.clear();
  }
}

/**
 * The size, in device pixels rounded up to {@link STEP}, at which `video`
 * draws its picture: its box scaled by `object-fit` (`cover` fills the box
 * and crops, so the picture is larger than the box; `contain` fits inside).
 * @param {HTMLVideoElement} video
 */
export function drawnSize(video) {
  const box = video.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) return { width: 0, height: 0 };
  const aspect = video.videoWidth && video.videoHeight ? video.videoWidth / video.videoHeight : DEFAULT_ASPECT;
  const cover = getComputedStyle(video).objectFit === 'cover';
  const boxAspect = box.width / box.height;
  // Cover: the picture's height follows the box when the picture is wider
  // than the box; contain: its width does.
  const byHeight = cover ? aspect > boxAspect : aspect < boxAspect;
  const width = byHeight ? box.height * aspect : box.width;
  const height = byHeight ? box.height : box.width / aspect;
  const dpr = window.devicePixelRatio || 1;
  const up = (/** @type {number} */ v) => Math.ceil((v * dpr) / STEP) * STEP;
  return { width: up(width), height: up(height) };
}
