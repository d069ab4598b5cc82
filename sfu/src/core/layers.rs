//! Simulcast: the layers of a published video track, what a subscriber's
//! view of it needs, and how to tell where a keyframe starts (the only
//! place a subscriber can be switched from one layer to another).
//!
//! A publisher sends its camera as up to three encodings of the same
//! picture, named by RTP stream id (rid): `q` (a quarter of the full
//! resolution), `h` (half) and `f` (full). Each has its own SSRC, sequence
//! numbers and timestamps. A track without simulcast is one layer, 0.

use super::leg::VideoCodec;
use crate::api::View;
use std::time::{Duration, Instant};

/// Layers a track may have.
pub const MAX_LAYERS: usize = 3;

/// A layer not heard from for this long counts as stopped (the browser
/// dropped it for bandwidth, or was told it is not needed).
const LAYER_STALE: Duration = Duration::from_millis(1000);

/// Size, in device pixels, of a layer that has not sent a keyframe yet:
/// what the web client asks its encoder for (a 1280×720 camera).
const NOMINAL_SIZES: [(u32, u32); MAX_LAYERS] = [(320, 180), (640, 360), (1280, 720)];

/// A layer covers a view when it is at least this share of the view's
/// size in both directions (a slightly smaller picture scaled up is not
/// worth three times the bits).
const COVER_SHARE: f64 = 0.85;

/// The rids of the layers, lowest first.
pub const LAYER_RIDS: [&str; MAX_LAYERS] = ["q", "h", "f"];

/// The layer a rid names: `q` 0, `h` 1, `f` 2. Packets without a rid (no
/// simulcast) are layer 0, as are rids the SFU does not know.
pub fn layer_of_rid(rid: Option<&str>) -> u8 {
    rid.and_then(|rid| LAYER_RIDS.iter().position(|r| *r == rid))
        .map_or(0, |at| at as u8)
}

/// Bitrate assumed for a layer not measured yet: what the web client asks
/// its encoder for (a camera without simulcast is its full layer).
const NOMINAL_BPS: [u64; MAX_LAYERS] = [150_000, 500_000, 1_500_000];

/// Layer bitrates are measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// What the SFU knows of one layer.
#[derive(Debug, Clone, Copy, Default)]
struct LayerState {
    /// The latest packet's arrival.
    last_packet: Option<Instant>,
    /// The picture size its latest keyframe gave (VP8 only).
    size: Option<(u32, u32)>,
    /// Payload bytes received in the current rate window.
    bytes: u64,
    /// Bits per second over the last complete window (0: none yet).
    bps: u64,
}

/// The layers of one track.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    layers: [LayerState; MAX_LAYERS],
    /// When the current rate window began.
    window_start: Option<Instant>,
}

impl Layers {
    /// Records a packet of `layer`. Returns true when the layer (re)starts:
    /// it was not live before this packet, so subscribers' choices may
    /// change.
    pub fn on_packet(
        &mut self,
        layer: u8,
        now: Instant,
        bytes: usize,
        keyframe: Option<KeyframeStart>,
    ) -> bool {
        let Some(state) = self.layers.get_mut(usize::from(layer)) else {
            return false;
        };
        state.bytes += bytes as u64;
        let started = state
            .last_packet
            .is_none_or(|at| now.saturating_duration_since(at) > LAYER_STALE);
        state.last_packet = Some(now);
        if let Some(KeyframeStart { size: Some(size) }) = keyframe {
            state.size = Some(size);
        }
        started
    }

    /// Whether `layer` has sent recently.
    pub fn is_live(&self, layer: u8, now: Instant) -> bool {
        self.layers
            .get(usize::from(layer))
            .and_then(|s| s.last_packet)
            .is_some_and(|at| now.saturating_duration_since(at) <= LAYER_STALE)
    }

    /// When `layer` last sent.
    pub fn last_packet(&self, layer: u8) -> Option<Instant> {
        self.layers.get(usize::from(layer))?.last_packet
    }

    /// Closes the rate window when it is complete: each layer's bitrate is
    /// then what it sent during the window.
    pub fn measure(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < RATE_WINDOW {
            return;
        }
        for state in &mut self.layers {
            state.bps = state.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            state.bytes = 0;
        }
        self.window_start = Some(now);
    }

    /// What forwarding `layer` costs, in bits per second of payload: as
    /// measured, or nominal before a measurement (a track `simulcast` or
    /// not: a camera's only layer is a full one).
    pub fn cost(&self, layer: u8, simulcast: bool) -> u64 {
        let i = usize::from(layer).min(MAX_LAYERS - 1);
        match self.layers[i].bps {
            0 if simulcast => NOMINAL_BPS[i],
            0 => NOMINAL_BPS[MAX_LAYERS - 1],
            bps => bps,
        }
    }

    /// A layer's picture size: from its latest keyframe, or nominal.
    pub fn size(&self, layer: u8) -> (u32, u32) {
        let i = usize::from(layer).min(MAX_LAYERS - 1);
        self.layers[i].size.unwrap_or(NOMINAL_SIZES[i])
    }

    /// The layer a subscriber should receive: `None` (nothing) for a tile
    /// that is not on screen; else the smallest live layer that covers the
    /// view, or the largest live one if none does. Without a view (a
    /// client that does not say), the largest live layer. Before any layer
    /// has sent, the one the view would want, so its first keyframe is
    /// forwarded.
    pub fn choose(&self, view: Option<View>, now: Instant) -> Option<u8> {
        if view.is_some_and(|v| !v.visible) {
            return None;
        }
        let live: Vec<u8> = (0..MAX_LAYERS as u8)
            .filter(|&l| self.is_live(l, now))
            .collect();
        if live.is_empty() {
            return Some(0);
        }
        live.iter()
            .copied()
            .find(|&l| self.covers(l, view))
            .or(live.last().copied())
    }

    /// The layer a view needs, whether the publisher sends it now or not:
    /// `None` for a tile not on screen, else the smallest of `count` layers
    /// that covers it, or the top one. What dynacast keeps the publisher
    /// sending.
    pub fn wanted(&self, view: Option<View>, count: u8) -> Option<u8> {
        if view.is_some_and(|v| !v.visible) {
            return None;
        }
        let top = count.clamp(1, MAX_LAYERS as u8) - 1;
        (0..top).find(|&l| self.covers(l, view)).or(Some(top))
    }

    /// Whether `layer`'s picture is about as large as `view` (never
    /// without a view: such a client gets the best there is).
    fn covers(&self, layer: u8, view: Option<View>) -> bool {
        let Some(v) = view else { return false };
        let (w, h) = self.size(layer);
        f64::from(w) >= f64::from(v.width) * COVER_SHARE
            && f64::from(h) >= f64::from(v.height) * COVER_SHARE
    }
}

/// The first packet of a keyframe, with the picture size when the codec
/// carries it in the first packet (VP8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeStart {
    /// Width and height.
    pub size: Option<(u32, u32)>,
}

/// Whether `payload` (an RTP payload of `codec`) begins a keyframe.
pub fn keyframe_start(codec: VideoCodec, payload: &[u8]) -> Option<KeyframeStart> {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_start(payload),
        VideoCodec::H264 => h264_keyframe_start(payload).then_some(KeyframeStart { size: None }),
    }
}

/// VP8 (RFC 7741): the payload descriptor's S bit with partition 0, then a
/// frame tag whose P bit is 0 (a key frame), whose header holds the size.
fn vp8_keyframe_start(payload: &[u8]) -> Option<KeyframeStart> {
    let first = *payload.first()?;
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start_of_partition || partition != 0 {
        return None;
    }
    let mut at = 1;
    if extended {
        let x = *payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            // Picture id: one byte, or two when its M bit is set.
            let picture_id = *payload.get(at)?;
            at += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    let frame = payload.get(at..)?;
    if *frame.first()? & 0x01 != 0 {
        return None; // an inter frame
    }
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and
    // height (the top two bits of each are the scaling).
    let size = match frame.get(3..10) {
        Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) => Some((
            u32::from(u16::from_le_bytes([*w0, *w1]) & 0x3fff),
            u32::from(u16::from_le_bytes([*h0, *h1]) & 0x3fff),
        )),
        _ => None,
    };
    Some(KeyframeStart { size })
}

/// H.264 (RFC 6184): an IDR slice or a sequence parameter set, alone, in
/// an aggregation packet (STAP-A) or at the start of a fragment (FU-A).
fn h264_keyframe_start(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&header) = payload.first() else {
        return false;
    };
    match header & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(nal) = tail.get(..len) else {
                    return false;
                };
                if nal.first().is_some_and(|h| matches!(h & 0x1f, IDR | SPS)) {
                    return true;
                }
                rest = &tail[len..];
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 key frame's first packet: descriptor with a 15-bit picture
    /// id, then the frame tag, start code and size.
    fn vp8_key(width: u16, height: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x80 | 0x12, 0x34];
        p.extend([0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a]);
        p.extend(width.to_le_bytes());
        p.extend(height.to_le_bytes());
        p.extend([0u8; 20]);
        p
    }

    #[test]
    fn vp8_key_frames_and_their_size_are_recognised() {
        assert_eq!(
            keyframe_start(VideoCodec::Vp8, &vp8_key(640, 360)),
            Some(KeyframeStart {
                size: Some((640, 360))
            })
        );
        // Without the extension byte.
        let plain = [
            0x10, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00,
        ];
        assert_eq!(
            keyframe_start(VideoCodec::Vp8, &plain),
            Some(KeyframeStart {
                size: Some((320, 180))
            })
        );
    }

    #[test]
    fn vp8_inter_frames_and_continuations_are_not_key_frames() {
        let mut inter = vp8_key(640, 360);
        inter[4] |= 0x01;
        assert_eq!(keyframe_start(VideoCodec::Vp8, &inter), None);
        let mut middle = vp8_key(640, 360);
        middle[0] &= !0x10;
        assert_eq!(keyframe_start(VideoCodec::Vp8, &middle), None);
        assert_eq!(keyframe_start(VideoCodec::Vp8, &[]), None);
        assert_eq!(keyframe_start(VideoCodec::Vp8, &[0x90]), None);
    }

    #[test]
    fn h264_idr_sps_and_their_aggregates_are_key_frames() {
        assert!(keyframe_start(VideoCodec::H264, &[0x65, 1, 2]).is_some());
        assert!(keyframe_start(VideoCodec::H264, &[0x67, 1, 2]).is_some());
        // STAP-A holding SPS then PPS.
        let stap = [0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1];
        assert!(keyframe_start(VideoCodec::H264, &stap).is_some());
        // FU-A: start of an IDR, then its middle.
        assert!(keyframe_start(VideoCodec::H264, &[0x7c, 0x85, 1]).is_some());
        assert!(keyframe_start(VideoCodec::H264, &[0x7c, 0x05, 1]).is_none());
        assert!(keyframe_start(VideoCodec::H264, &[0x41, 1]).is_none());
        assert!(keyframe_start(VideoCodec::H264, &[0x78, 0, 9, 0x67]).is_none());
    }

    fn live(layers: &[u8], now: Instant) -> Layers {
        let mut all = Layers::default();
        for &l in layers {
            all.on_packet(l, now, 1000, None);
        }
        all
    }

    fn view(width: u32, height: u32) -> Option<View> {
        Some(View {
            visible: true,
            width,
            height,
        })
    }

    #[test]
    fn the_smallest_live_layer_that_covers_the_view() {
        let now = Instant::now();
        let all = live(&[0, 1, 2], now);
        assert_eq!(all.choose(view(300, 170), now), Some(0));
        assert_eq!(all.choose(view(480, 270), now), Some(1));
        assert_eq!(all.choose(view(1920, 1080), now), Some(2), "the largest");
        assert_eq!(all.choose(None, now), Some(2), "no view: the largest");
        let hidden = Some(View {
            visible: false,
            width: 640,
            height: 360,
        });
        assert_eq!(all.choose(hidden, now), None, "off screen: nothing");
    }

    #[test]
    fn stopped_layers_are_not_chosen() {
        let t0 = Instant::now();
        let mut layers = live(&[0, 1, 2], t0);
        let later = t0 + Duration::from_secs(2);
        layers.on_packet(0, later, 1000, None);
        layers.on_packet(1, later, 1000, None);
        assert_eq!(layers.choose(view(1280, 720), later), Some(1));
        assert!(
            layers.on_packet(2, later, 1000, None),
            "a layer that comes back starts again"
        );
        assert_eq!(layers.choose(view(1280, 720), later), Some(2));
    }

    #[test]
    fn measured_sizes_replace_the_nominal_ones() {
        let now = Instant::now();
        let mut layers = live(&[0, 1], now);
        // The browser sent its lowest layer at 480×270.
        layers.on_packet(
            0,
            now,
            1000,
            Some(KeyframeStart {
                size: Some((480, 270)),
            }),
        );
        assert_eq!(layers.choose(view(480, 270), now), Some(0));
    }

    #[test]
    fn the_wanted_layer_ignores_what_is_sent_now() {
        let now = Instant::now();
        // Only `q` sends (dynacast stopped the others).
        let low = live(&[0], now);
        assert_eq!(low.wanted(view(1280, 720), 3), Some(2), "f, to turn on");
        assert_eq!(low.wanted(view(480, 270), 3), Some(1));
        assert_eq!(low.wanted(view(200, 112), 3), Some(0));
        assert_eq!(low.wanted(None, 3), Some(2), "no view: the best");
        let hidden = Some(View {
            visible: false,
            width: 640,
            height: 360,
        });
        assert_eq!(low.wanted(hidden, 3), None);
        assert_eq!(low.wanted(view(1280, 720), 1), Some(0), "one layer");
    }

    #[test]
    fn rids_name_layers() {
        assert_eq!(layer_of_rid(None), 0);
        assert_eq!(layer_of_rid(Some("q")), 0);
        assert_eq!(layer_of_rid(Some("h")), 1);
        assert_eq!(layer_of_rid(Some("f")), 2);
    }
}
