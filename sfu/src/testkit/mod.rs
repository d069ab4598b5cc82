//! Simulated participants: a sans-IO stand-in for a browser, built on str0m
//! like the SFU itself. Core tests run them over a simulated network; the
//! integration tests and the load generator put them on real sockets.
//!
//! A [`SimPeer`] has the same two connections a browser has: it offers on
//! its publish connection and answers the SFU's offers on its subscribe
//! connection. It sends synthetic Opus-sized and VP8-shaped packets whose
//! payload names the sender, the stream, a sequence number and the send
//! time, so receivers can check every packet's origin, continuity and
//! latency.

pub mod sim;

use crate::api::{
    Command, Event, Kind, OfferedTrack, ParticipantId, PublishOffer, Source, TrackLabel,
};
use crate::core::layers::layer_of_rid;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event as RtcEvent, Input, Output, Rtc};

/// Marks a synthetic payload.
const MAGIC: [u8; 2] = *b"ZY";
/// Bytes of the synthetic header inside the payload.
pub const HEADER_LEN: usize = 2 + 8 + 1 + 4 + 8;

/// The synthetic payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sender.
    pub participant: u64,
    /// What stream.
    pub source: Source,
    /// Simulcast layer (0 without simulcast).
    pub layer: u8,
    /// Per-stream packet counter.
    pub sequence: u32,
    /// Send time, µs since the shared epoch.
    pub sent_us: u64,
}

impl Stamp {
    /// Writes the stamp at the start of `buf` (at least [`HEADER_LEN`]).
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&MAGIC);
        buf[2..10].copy_from_slice(&self.participant.to_be_bytes());
        buf[10] = source_code(self.source) | (self.layer << 4);
        buf[11..15].copy_from_slice(&self.sequence.to_be_bytes());
        buf[15..23].copy_from_slice(&self.sent_us.to_be_bytes());
    }

    /// Reads a stamp back; `None` if the bytes are not one.
    pub fn read(buf: &[u8]) -> Option<Self> {
        if buf.len() < HEADER_LEN || buf[0..2] != MAGIC {
            return None;
        }
        Some(Self {
            participant: u64::from_be_bytes(buf[2..10].try_into().ok()?),
            source: source_from_code(buf[10] & 0x0f)?,
            layer: buf[10] >> 4,
            sequence: u32::from_be_bytes(buf[11..15].try_into().ok()?),
            sent_us: u64::from_be_bytes(buf[15..23].try_into().ok()?),
        })
    }
}

fn source_code(source: Source) -> u8 {
    match source {
        Source::Camera => 1,
        Source::Microphone => 2,
        Source::Screen => 3,
        Source::ScreenAudio => 4,
    }
}

fn source_from_code(code: u8) -> Option<Source> {
    Some(match code {
        1 => Source::Camera,
        2 => Source::Microphone,
        3 => Source::Screen,
        4 => Source::ScreenAudio,
        _ => return None,
    })
}

/// What a peer saw of one remote stream.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Packets whose stamp named another sender or stream than the label.
    pub mislabelled: u64,
    /// Highest RTP sequence number seen (extended).
    pub highest_seq: Option<u64>,
    /// Lowest RTP sequence number seen (extended).
    pub lowest_seq: Option<u64>,
    /// Distinct RTP sequence numbers seen.
    pub distinct: u64,
    /// Highest stamp sequence seen.
    pub highest_stamp: Option<u32>,
    /// Latency samples (send → receive), µs.
    pub latencies_us: Vec<u64>,
    /// RTCP sender reports received for this stream.
    pub sender_reports: u64,
    /// Packets that arrived, for the first time, after a higher sequence
    /// number of the stream had (out of order, or a late repair).
    pub reordered: u64,
    /// Packets received of each simulcast layer.
    pub layers: [u64; 3],
    /// The layer of the latest packet.
    pub layer: Option<u8>,
    /// When the latest packet of each simulcast layer arrived.
    pub last_of_layer: [Option<Instant>; 3],
    /// Audio packets that came as RED (RFC 2198).
    pub red: u64,
    /// The minimum of the latest playout-delay header extension seen (a
    /// browser keeps a value until a packet brings another).
    pub playout_min: Option<Duration>,
    /// When the first packet of the latest keyframe arrived (video).
    pub last_keyframe: Option<Instant>,
    seen: std::collections::HashSet<u64>,
}

impl Received {
    /// Sequence numbers missing between the lowest and highest seen.
    pub fn missing(&self) -> u64 {
        match (self.lowest_seq, self.highest_seq) {
            (Some(lo), Some(hi)) => (hi - lo + 1).saturating_sub(self.distinct),
            _ => 0,
        }
    }
}

/// What arrived of one incoming stream, counted from RTP headers (which
/// SRTP leaves in the clear) without decrypting.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderLedger {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen (encrypted, on the wire).
    pub bytes: u64,
    /// First extended sequence number.
    pub first: u64,
    /// Highest extended sequence number.
    pub highest: u64,
}

impl HeaderLedger {
    /// Packets the sender sent between the first and highest seen.
    pub fn expected(&self) -> u64 {
        if self.packets == 0 {
            0
        } else {
            self.highest - self.first + 1
        }
    }

    /// Packets missing in that span.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    fn record(&mut self, seq: u16, bytes: usize) -> u64 {
        let ext = if self.packets == 0 {
            u64::from(seq) + (1 << 16)
        } else {
            // The extended number closest to the highest seen.
            let base = self.highest & !0xffff;
            [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                .into_iter()
                .map(|b| b + u64::from(seq))
                .min_by_key(|c| c.abs_diff(self.highest))
                .unwrap_or(base)
        };
        if self.packets == 0 {
            self.first = ext;
            self.highest = ext;
        }
        self.packets += 1;
        self.bytes += bytes as u64;
        self.first = self.first.min(ext);
        self.highest = self.highest.max(ext);
        ext
    }
}

/// A datagram a peer wants sent.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// From.
    pub source: SocketAddr,
    /// To.
    pub destination: SocketAddr,
    /// Bytes.
    pub contents: Vec<u8>,
}

/// How a sim peer's media looks.
#[derive(Debug, Clone, Copy)]
pub struct MediaShape {
    /// Publish a microphone track.
    pub audio: bool,
    /// Start with the microphone muted the way the web client mutes: its
    /// m-line is negotiated, but no packet is sent (`replaceTrack(null)`).
    pub audio_muted: bool,
    /// Publish a camera track.
    pub video: bool,
    /// Audio packets per second (a browser sends 50: 20 ms Opus frames).
    pub audio_rate: u32,
    /// Video bitrate, bits/s.
    pub video_bitrate: u32,
    /// Video frames per second.
    pub fps: u32,
    /// A keyframe at least this often.
    pub keyframe_interval: Duration,
    /// Send the camera as three simulcast layers (rids `q`, `h`, `f`, at
    /// [`SIMULCAST_SHARES`] of `video_bitrate`), as the web client does,
    /// and start or stop layers when the SFU says (dynacast).
    pub simulcast: bool,
    /// Publish a screen share: one VP8 encoding, as the web client sends
    /// it, at `screen_bitrate` and `screen_fps`.
    pub screen: bool,
    /// Screen share bitrate, bits/s.
    pub screen_bitrate: u32,
    /// Screen share frames per second.
    pub screen_fps: u32,
    /// Offer RED (RFC 2198) for audio, as Chromium does, and send the
    /// microphone as RED when the answer takes it (Zync's does): each
    /// packet carries a 32 kbit/s Opus frame and the one before it (the web
    /// client caps the microphone at 32 kbit/s). Without it, plain Opus at
    /// 64 kbit/s: the same bytes per packet.
    pub red: bool,
}

/// Simulcast layers' rids and their share of the full bitrate (the web
/// client's 150 kbit/s, 500 kbit/s and 1.5 Mbit/s).
pub const SIMULCAST_SHARES: [(&str, f64); 3] = [("q", 0.1), ("h", 1.0 / 3.0), ("f", 1.0)];

impl MediaShape {
    /// Someone who publishes nothing and only receives.
    pub fn watcher() -> Self {
        Self {
            audio: false,
            video: false,
            ..Self::default()
        }
    }
}

impl Default for MediaShape {
    fn default() -> Self {
        Self {
            audio: true,
            audio_muted: false,
            video: true,
            audio_rate: 50,
            video_bitrate: 1_000_000,
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            simulcast: false,
            screen: false,
            // Slides with some motion: Chromium sends a `detail` screen
            // track at a few frames a second, well under the client's
            // 2.5 Mbit/s ceiling.
            screen_bitrate: 1_000_000,
            screen_fps: 10,
            red: true,
        }
    }
}

/// Audio: 20 ms Opus frames of this many payload bytes (~64 kbit/s).
const AUDIO_PAYLOAD: usize = 160;
/// Audio sent as RED: Opus frames of this many bytes (32 kbit/s).
const RED_FRAME: usize = AUDIO_PAYLOAD / 2;
/// Earlier frames each RED packet carries again (Chromium: one, the
/// previous packet's, 960 ticks back).
const RED_LEVELS: usize = 1;
/// Largest video packet payload.
const MAX_VIDEO_PAYLOAD: usize = 1200;

/// One video encoding being sent: the camera, one of its simulcast
/// layers, or the screen share.
struct VideoLayer {
    out: Outgoing,
    source: Source,
    rid: Option<Rid>,
    /// Bits per second.
    bitrate: f64,
    fps: u32,
    /// Sent (dynacast may stop a layer).
    active: bool,
    keyframe_wanted: bool,
    last_keyframe: Option<Instant>,
    /// The next frame's VP8 picture id (15 bits, random at first, one
    /// more per frame sent, as Chromium numbers them).
    picture_id: u16,
}

/// A publisher acts on one keyframe request per m-line in this time and
/// lets the others pass, whichever layer they ask for: what libwebrtc's
/// `EncoderRtcpFeedback` does (`min_keyframe_send_interval`, one clock for
/// all the simulcast layers of an encoder), so a request for the full
/// layer shortly after one for the low layer gets no keyframe.
pub const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(300);

/// Bytes before a video packet's stamp: the VP8 payload descriptor as
/// Chromium writes it (X and S bits, then I with a 15-bit picture id),
/// and the first byte of the VP8 frame tag (its P bit: 0 for keyframes).
const VP8_PREFIX: usize = 5;

#[derive(Clone, Copy)]
struct Outgoing {
    mid: Mid,
    pt: Pt,
    seq: u64,
    stamp_seq: u32,
    next_at: Instant,
    rtp_time: u32,
}

/// A simulated browser: two str0m connections, synthetic media out, and a
/// ledger of media in.
pub struct SimPeer {
    /// Signaling's id for it.
    pub id: ParticipantId,
    /// The offering (sending) connection.
    pub publish: Rtc,
    /// The answering (receiving) connection.
    pub subscribe: Rtc,
    publish_addr: SocketAddr,
    subscribe_addr: SocketAddr,
    pending: Option<SdpPendingOffer>,
    shape: MediaShape,
    epoch: Instant,
    audio: Option<Outgoing>,
    /// When the microphone goes out as RED: Opus's payload type, and the
    /// latest frames (oldest first), carried again in the next packet.
    audio_red: Option<(Pt, VecDeque<Vec<u8>>)>,
    video: Vec<VideoLayer>,
    /// Keyframe requests the SFU sent us.
    pub keyframe_requests: u64,
    /// Keyframe requests not acted on yet: the m-line and the layer's rid
    /// (`None`: all of the line's).
    keyframe_requested: Vec<(Mid, Option<Rid>)>,
    /// Keyframe requests let pass without a keyframe (see
    /// [`KEYFRAME_REQUEST_GAP`]).
    pub keyframe_requests_ignored: u64,
    /// When a keyframe request was last acted on, per publish m-line.
    keyframe_request_acted: HashMap<Mid, Instant>,
    /// The publish m-lines we offered.
    published: Vec<(Mid, MediaKind, Source)>,
    /// Labels of the subscribe m-lines, from the SFU's offers.
    pub tracks: HashMap<String, OfferedTrack>,
    /// What arrived, by (sender, source).
    pub received: HashMap<(ParticipantId, Source), Received>,
    /// Subscribe offers answered so far.
    pub offers_answered: u64,
    /// The latest `ActiveSpeakers` report: dominant first.
    pub speakers: Vec<(ParticipantId, u8)>,
    /// Frames whose VP8 picture id did not follow the previous frame's on
    /// their m-line: (mid, previous, this one). Layer switches and
    /// recycled m-lines must keep the numbering continuous.
    pub picture_id_jumps: Vec<(Mid, u16, u16)>,
    /// The latest frame's picture id on each m-line.
    picture_ids: HashMap<Mid, u16>,
    /// Every `PublisherLayers` received, oldest first.
    pub publisher_layers: Vec<(Source, Vec<&'static str>)>,
    /// The largest subscribe offer received: its SDP bytes and m-lines
    /// (noted by whoever has the text, see [`SimPeer::note_offer_text`]).
    pub largest_offer: (usize, usize),
    /// The SFU's ICE ufrag on the subscribe connection (from its last offer).
    pub server_ufrag: Option<String>,
    /// First time any remote media arrived.
    pub first_media_at: Option<Instant>,
    /// Events for signaling from str0m errors, for tests to assert on.
    pub errors: Vec<String>,
    /// Light receiving (for load tests): count incoming RTP from its clear
    /// headers and hand only one packet in this many per stream to str0m
    /// for decryption (latency samples). `None` decrypts everything.
    pub sample_every: Option<u64>,
    /// Header-level counts per incoming SSRC (light receiving only).
    pub headers: HashMap<u32, HeaderLedger>,
    outgoing: VecDeque<Datagram>,
}

impl SimPeer {
    /// A peer whose publish connection uses `publish_addr` and subscribe
    /// connection `subscribe_addr`; stamps are µs since `epoch`.
    pub fn new(
        id: ParticipantId,
        now: Instant,
        epoch: Instant,
        publish_addr: SocketAddr,
        subscribe_addr: SocketAddr,
        shape: MediaShape,
    ) -> Self {
        let build = |addr: SocketAddr| {
            let mut rtc = Rtc::builder()
                .set_rtp_mode(true)
                .clear_codecs()
                .enable_opus(true, shape.red)
                .enable_vp8(true)
                .set_stats_interval(None)
                .set_mtu(str0m::DATAGRAM_MTU_TARGET..=1500)
                // As Chromium: it accepts the SFU's playout delay.
                .set_extension(6, str0m::rtp::Extension::PlayoutDelay)
                .build(now);
            if let Ok(candidate) = Candidate::host(addr, "udp") {
                rtc.add_local_candidate(candidate);
            }
            rtc
        };
        Self {
            id,
            publish: build(publish_addr),
            subscribe: build(subscribe_addr),
            publish_addr,
            subscribe_addr,
            pending: None,
            shape,
            epoch,
            audio: None,
            audio_red: None,
            video: Vec::new(),
            keyframe_requests: 0,
            keyframe_requested: Vec::new(),
            keyframe_requests_ignored: 0,
            keyframe_request_acted: HashMap::new(),
            published: Vec::new(),
            tracks: HashMap::new(),
            received: HashMap::new(),
            offers_answered: 0,
            speakers: Vec::new(),
            publisher_layers: Vec::new(),
            picture_id_jumps: Vec::new(),
            picture_ids: HashMap::new(),
            largest_offer: (0, 0),
            server_ufrag: None,
            first_media_at: None,
            errors: Vec::new(),
            sample_every: None,
            headers: HashMap::new(),
            outgoing: VecDeque::new(),
        }
    }

    /// The addresses of its two connections.
    pub fn addresses(&self) -> [SocketAddr; 2] {
        [self.publish_addr, self.subscribe_addr]
    }

    /// Creates the publish offer for the shape's tracks (`None` when it
    /// publishes nothing).
    pub fn publish_offer(&mut self) -> Option<Command> {
        let mut api = self.publish.sdp_api();
        let mut tracks = Vec::new();
        let wanted = [
            (self.shape.audio, MediaKind::Audio, Source::Microphone),
            (self.shape.video, MediaKind::Video, Source::Camera),
            (self.shape.screen, MediaKind::Video, Source::Screen),
        ];
        for (_, kind, source) in wanted.into_iter().filter(|(on, _, _)| *on) {
            let simulcast = (source == Source::Camera && self.shape.simulcast).then(|| {
                let mut layers = Simulcast::new();
                for (rid, _) in SIMULCAST_SHARES {
                    layers.add_send_layer(SimulcastLayer::new(rid));
                }
                layers
            });
            let mid = api.add_media(kind, Direction::SendOnly, None, None, simulcast);
            self.published.push((mid, kind, source));
            tracks.push(TrackLabel {
                mid: mid.to_string(),
                source,
            });
        }
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        self.drain();
        // Through text, as a browser's offer arrives (and is checked).
        match PublishOffer::parse(&offer.to_sdp_string(), tracks) {
            Ok(offer) => Some(Command::PublishOffer {
                participant: self.id,
                offer,
            }),
            Err(e) => {
                self.errors.push(format!("own offer refused: {e}"));
                None
            }
        }
    }

    /// Acts on an event from the SFU; returns the command to send back, if any.
    pub fn on_event(&mut self, now: Instant, event: Event) -> Option<Command> {
        match event {
            Event::PublishAnswer { answer } => {
                let Some(pending) = self.pending.take() else {
                    self.errors.push("unexpected publish answer".into());
                    return None;
                };
                if let Err(e) = self.publish.sdp_api().accept_answer(pending, answer) {
                    self.errors.push(format!("accept_answer: {e}"));
                }
                self.drain();
                self.start_media(now);
                None
            }
            Event::SubscribeOffer { offer, tracks } => {
                let answer = match self.subscribe.sdp_api().accept_offer(offer) {
                    Ok(answer) => answer,
                    Err(e) => {
                        self.errors.push(format!("accept_offer: {e}"));
                        return None;
                    }
                };
                self.drain();
                if self.sample_every.is_some() {
                    // Skipped packets are not lost; asking for them again
                    // would only add load.
                    for track in &tracks {
                        if let Some(stream) = self
                            .subscribe
                            .direct_api()
                            .stream_rx_by_mid(track.mid.as_str().into(), None)
                        {
                            stream.suppress_nack(true);
                        }
                    }
                }
                self.tracks = tracks.into_iter().map(|t| (t.mid.clone(), t)).collect();
                self.offers_answered += 1;
                Some(Command::SubscribeAnswer {
                    participant: self.id,
                    answer,
                })
            }
            Event::Error { code, message } => {
                self.errors.push(format!("{code}: {message}"));
                None
            }
            Event::Failed { reason } => {
                self.errors.push(format!("failed: {reason}"));
                None
            }
            Event::PublisherLayers { source, active } => {
                if source == Source::Camera {
                    self.set_active_layers(&active);
                }
                self.publisher_layers.push((source, active));
                None
            }
            Event::ActiveSpeakers { speakers } => {
                self.speakers = speakers;
                None
            }
        }
    }

    fn start_media(&mut self, now: Instant) {
        let params = self.publish.codec_config().params().to_vec();
        let pt_of = |codec: Codec| {
            params
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        for (mid, kind, source) in self.published.clone() {
            let start = Outgoing {
                mid,
                pt: Pt::from(0),
                seq: u64::from(rand::random::<u16>() >> 2),
                stamp_seq: 0,
                next_at: now,
                rtp_time: rand::random(),
            };
            match kind {
                MediaKind::Audio => {
                    let opus = params.iter().find(|p| p.spec().codec == Codec::Opus);
                    if let Some(opus) = opus {
                        // RED when negotiated (str0m keeps it only then).
                        let red = opus.red().filter(|_| self.shape.red);
                        self.audio = Some(Outgoing {
                            pt: red.unwrap_or(opus.pt()),
                            ..start
                        });
                        self.audio_red = red.map(|_| (opus.pt(), VecDeque::new()));
                    }
                }
                MediaKind::Video => {
                    let Some(pt) = pt_of(Codec::Vp8) else {
                        continue;
                    };
                    let (bitrate, fps) = match source {
                        Source::Screen => (self.shape.screen_bitrate, self.shape.screen_fps),
                        _ => (self.shape.video_bitrate, self.shape.fps),
                    };
                    let layers: &[(&str, f64)] = if source == Source::Camera && self.shape.simulcast
                    {
                        &SIMULCAST_SHARES
                    } else {
                        &[("", 1.0)]
                    };
                    for &(rid, share) in layers {
                        self.video.push(VideoLayer {
                            out: Outgoing {
                                pt,
                                seq: u64::from(rand::random::<u16>() >> 2),
                                rtp_time: rand::random(),
                                ..start
                            },
                            source,
                            rid: (!rid.is_empty()).then(|| Rid::from(rid)),
                            bitrate: f64::from(bitrate) * share,
                            fps: fps.max(1),
                            active: true,
                            keyframe_wanted: true,
                            last_keyframe: None,
                            picture_id: rand::random::<u16>() & 0x7fff,
                        });
                    }
                }
            }
        }
    }

    /// Records the size of a subscribe offer's SDP text, as it arrived.
    pub fn note_offer_text(&mut self, sdp: &str) {
        let lines = sdp.matches("\nm=").count();
        self.largest_offer = self.largest_offer.max((sdp.len(), lines));
        self.server_ufrag = sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .map(|u| u.trim().to_string());
    }

    /// Mutes or unmutes the microphone as the web client does: while muted
    /// nothing is sent on its m-line (RTP time still runs, as a browser's
    /// does), and unmuting resumes without renegotiation.
    pub fn set_audio_muted(&mut self, muted: bool) {
        self.shape.audio_muted = muted;
    }

    /// Whether media is flowing out (the publish answer was applied).
    pub fn is_publishing(&self) -> bool {
        self.audio.is_some() || !self.video.is_empty()
    }

    /// Feeds a datagram addressed to one of our connections.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if let Some(every) = self.sample_every
            && destination == self.subscribe_addr
            && let Some((ssrc, seq)) = rtp_header(data)
        {
            let ledger = self.headers.entry(ssrc).or_default();
            let ext = ledger.record(seq, data.len());
            self.first_media_at.get_or_insert(now);
            if !ext.is_multiple_of(every.max(1)) {
                return;
            }
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let rtc = if destination == self.publish_addr {
            &mut self.publish
        } else {
            &mut self.subscribe
        };
        if let Err(e) = rtc.handle_input(input) {
            self.errors.push(format!("handle_input: {e}"));
        }
        self.drain();
    }

    /// Sends media that is due and advances both connections' clocks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.send_due_media(now);
        for rtc in [&mut self.publish, &mut self.subscribe] {
            if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                self.errors.push(format!("timeout: {e}"));
            }
        }
        self.drain();
    }

    /// When the peer next needs [`SimPeer::handle_timeout`].
    pub fn next_timeout(&mut self) -> Instant {
        let mut t = self.drain();
        let video = self.video.iter().map(|l| &l.out);
        for out in self.audio.iter().chain(video) {
            t = t.min(out.next_at);
        }
        t
    }

    /// Datagrams waiting to be sent.
    pub fn take_outgoing(&mut self) -> impl Iterator<Item = Datagram> + '_ {
        self.outgoing.drain(..)
    }

    fn send_due_media(&mut self, now: Instant) {
        let sent_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let participant = self.id.0;
        if let Some(audio) = self.audio.as_mut()
            && audio.next_at <= now
            && self.shape.audio_muted
        {
            let rate = self.shape.audio_rate.max(1);
            audio.rtp_time = audio.rtp_time.wrapping_add(48_000 / rate);
            audio.next_at = (audio.next_at + Duration::from_secs(1) / rate).max(now);
        }
        if let Some(audio) = self.audio.as_mut()
            && audio.next_at <= now
            && !self.shape.audio_muted
        {
            let size = if self.audio_red.is_some() {
                RED_FRAME
            } else {
                AUDIO_PAYLOAD
            };
            let mut payload = vec![0u8; size];
            Stamp {
                participant,
                source: Source::Microphone,
                layer: 0,
                sequence: audio.stamp_seq,
                sent_us,
            }
            .write(&mut payload);
            if let Some((opus, earlier)) = self.audio_red.as_mut() {
                let blocks: Vec<&[u8]> = earlier.iter().map(|b| &b[..]).collect();
                let red = crate::core::red::wrap(*opus, &blocks, &payload, 960);
                if earlier.len() == RED_LEVELS {
                    earlier.pop_front();
                }
                earlier.push_back(payload);
                payload = red;
            }
            let exts = ExtensionValues {
                audio_level: Some(-30),
                voice_activity: Some(true),
                ..Default::default()
            };
            write(
                &mut self.publish,
                audio,
                None,
                now,
                payload,
                true,
                exts,
                false,
            );
            drain_publish(
                &mut self.publish,
                &mut self.outgoing,
                &mut self.errors,
                self.publish_addr,
                &mut self.keyframe_requested,
            );
            let rate = self.shape.audio_rate.max(1);
            audio.rtp_time = audio.rtp_time.wrapping_add(48_000 / rate);
            audio.next_at += Duration::from_secs(1) / rate;
            if audio.next_at < now {
                audio.next_at = now;
            }
        }
        self.note_keyframe_requests(now);
        for layer in &mut self.video {
            let fps = layer.fps;
            let video = &mut layer.out;
            if video.next_at > now {
                continue;
            }
            if layer.active {
                let keyframe = layer.keyframe_wanted
                    || layer
                        .last_keyframe
                        .is_none_or(|t| now.duration_since(t) >= self.shape.keyframe_interval);
                if keyframe {
                    layer.keyframe_wanted = false;
                    layer.last_keyframe = Some(now);
                }
                let frame_bytes = (layer.bitrate / 8.0 / f64::from(fps)) as usize;
                let frame_bytes = if keyframe {
                    frame_bytes * 3
                } else {
                    frame_bytes
                }
                .max(HEADER_LEN + VP8_PREFIX);
                let packets = frame_bytes.div_ceil(MAX_VIDEO_PAYLOAD);
                let stamp = Stamp {
                    participant,
                    source: layer.source,
                    layer: layer_of_rid(layer.rid.as_deref()),
                    sequence: video.stamp_seq,
                    sent_us,
                };
                for i in 0..packets {
                    let len = if i + 1 == packets {
                        frame_bytes - i * MAX_VIDEO_PAYLOAD
                    } else {
                        MAX_VIDEO_PAYLOAD
                    };
                    let mut payload = vec![0u8; len.max(HEADER_LEN + VP8_PREFIX)];
                    // VP8 payload descriptor: X, and S on the first packet of
                    // a frame; I and the picture id; then the frame tag's P
                    // bit, clear for keyframes.
                    payload[0] = if i == 0 { 0x90 } else { 0x80 };
                    payload[1] = 0x80;
                    let [high, low] = layer.picture_id.to_be_bytes();
                    payload[2] = 0x80 | high;
                    payload[3] = low;
                    payload[4] = if keyframe { 0x00 } else { 0x01 };
                    Stamp {
                        sequence: video.stamp_seq,
                        ..stamp
                    }
                    .write(&mut payload[VP8_PREFIX..]);
                    write(
                        &mut self.publish,
                        video,
                        layer.rid,
                        now,
                        payload,
                        i + 1 == packets,
                        ExtensionValues::default(),
                        true,
                    );
                    drain_publish(
                        &mut self.publish,
                        &mut self.outgoing,
                        &mut self.errors,
                        self.publish_addr,
                        &mut self.keyframe_requested,
                    );
                }
                layer.picture_id = (layer.picture_id + 1) & 0x7fff;
            }
            // A stopped layer's clock runs on, as an encoder's does.
            video.rtp_time = video.rtp_time.wrapping_add(90_000 / fps);
            video.next_at += Duration::from_secs(1) / fps;
            if video.next_at < now {
                video.next_at = now;
            }
        }
    }

    /// Starts and stops simulcast layers as the SFU asks (the web client
    /// sets its encodings' `active`); a layer that starts again begins with
    /// a keyframe, as an encoder does.
    pub fn set_active_layers(&mut self, active: &[&str]) {
        let camera = self.video.iter_mut().filter(|l| l.source == Source::Camera);
        for layer in camera.filter(|l| l.rid.is_some()) {
            let on = layer.rid.is_some_and(|r| active.contains(&&*r));
            if on && !layer.active {
                layer.keyframe_wanted = true;
            }
            layer.active = on;
        }
    }

    /// Which simulcast layers are being sent, by rid.
    pub fn active_layers(&self) -> Vec<String> {
        self.video
            .iter()
            .filter(|l| l.active)
            .filter_map(|l| l.rid.map(|r| r.to_string()))
            .collect()
    }

    /// Drains both connections; returns the earlier of their timeouts.
    fn drain(&mut self) -> Instant {
        let a = drain_publish(
            &mut self.publish,
            &mut self.outgoing,
            &mut self.errors,
            self.publish_addr,
            &mut self.keyframe_requested,
        );
        let mut received = Vec::new();
        let mut reports = Vec::new();
        let b = drain_subscribe(
            &mut self.subscribe,
            &mut self.outgoing,
            &mut self.errors,
            &mut received,
            &mut reports,
        );
        for p in received {
            if let Some(min) = p.playout_min {
                self.note_playout_min(p.mid, min);
            }
            self.record(p.mid, p.seq, p.pt, &p.payload, p.at);
        }
        for mid in reports {
            if let Some(track) = self.tracks.get(&*mid) {
                let key = (track.participant, track.source);
                self.received.entry(key).or_default().sender_reports += 1;
            }
        }
        a.min(b)
    }

    fn note_playout_min(&mut self, mid: Mid, min: Duration) {
        if let Some(track) = self.tracks.get(&*mid) {
            let key = (track.participant, track.source);
            self.received.entry(key).or_default().playout_min = Some(min);
        }
    }

    fn record(&mut self, mid: Mid, seq: u64, pt: Pt, payload: &[u8], at: Instant) {
        let Some((participant, source, kind)) = self
            .tracks
            .get(&*mid)
            .map(|t| (t.participant, t.source, t.kind))
        else {
            return;
        };
        let red = kind == Kind::Audio
            && self
                .subscribe
                .codec_config()
                .params()
                .iter()
                .any(|p| p.red() == Some(pt));
        let (payload, bytes) = if red {
            // The newest frame is the primary block.
            (
                crate::core::red::primary(payload).unwrap_or_default(),
                payload.len(),
            )
        } else {
            (payload, payload.len())
        };
        let keyframe = kind == Kind::Video
            && crate::core::layers::keyframe_start(crate::VideoCodec::Vp8, payload).is_some();
        let offset = if kind == Kind::Video {
            self.note_picture_id(mid, payload);
            VP8_PREFIX
        } else {
            0
        };
        let key = (participant, source);
        let stamp = payload.get(offset..).and_then(Stamp::read);
        self.first_media_at.get_or_insert(at);
        let entry = self.received.entry(key).or_default();
        entry.packets += 1;
        entry.bytes += bytes as u64;
        entry.red += u64::from(red);
        if keyframe {
            entry.last_keyframe = Some(at);
        }
        if entry.seen.insert(seq) {
            entry.distinct += 1;
            if entry.highest_seq.is_some_and(|h| seq < h) {
                entry.reordered += 1;
            }
        }
        entry.highest_seq = Some(entry.highest_seq.map_or(seq, |h| h.max(seq)));
        entry.lowest_seq = Some(entry.lowest_seq.map_or(seq, |l| l.min(seq)));
        match stamp {
            Some(s) if s.participant == participant.0 && s.source == source => {
                if let Some(count) = entry.layers.get_mut(usize::from(s.layer)) {
                    *count += 1;
                }
                if let Some(last) = entry.last_of_layer.get_mut(usize::from(s.layer)) {
                    *last = Some(at);
                }
                entry.layer = Some(s.layer);
                entry.highest_stamp = Some(
                    entry
                        .highest_stamp
                        .map_or(s.sequence, |h| h.max(s.sequence)),
                );
                let now_us = at.saturating_duration_since(self.epoch).as_micros() as u64;
                entry.latencies_us.push(now_us.saturating_sub(s.sent_us));
            }
            _ => entry.mislabelled += 1,
        }
    }

    /// Counts a frame whose VP8 picture id does not follow the previous
    /// frame's on the same m-line (what makes a browser's decoder drop
    /// frames as old, or wait for missing ones).
    fn note_picture_id(&mut self, mid: Mid, payload: &[u8]) {
        let [first, x, high, low, ..] = payload else {
            return;
        };
        if first & 0x90 != 0x90 || x & 0x80 == 0 || high & 0x80 == 0 {
            return; // not a frame's first packet with a 15-bit picture id
        }
        let id = u16::from_be_bytes([high & 0x7f, *low]);
        if let Some(last) = self.picture_ids.insert(mid, id)
            && id != (last + 1) & 0x7fff
            && id != last
        {
            self.picture_id_jumps.push((mid, last, id));
        }
    }

    /// A keyframe request since the last frame makes the next one a
    /// keyframe, unless the m-line acted on another within
    /// [`KEYFRAME_REQUEST_GAP`].
    fn note_keyframe_requests(&mut self, now: Instant) {
        for (mid, rid) in self.keyframe_requested.drain(..) {
            self.keyframe_requests += 1;
            let recent = self
                .keyframe_request_acted
                .get(&mid)
                .is_some_and(|at| now.saturating_duration_since(*at) < KEYFRAME_REQUEST_GAP);
            if recent {
                self.keyframe_requests_ignored += 1;
                continue;
            }
            self.keyframe_request_acted.insert(mid, now);
            for layer in &mut self.video {
                if layer.out.mid == mid && (rid.is_none() || layer.rid == rid) {
                    layer.keyframe_wanted = true;
                }
            }
        }
    }
}

/// SSRC and sequence number of an RTP (not RTCP) datagram.
fn rtp_header(data: &[u8]) -> Option<(u32, u16)> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    // RTCP packet types 200-204 share the second byte's range with RTP
    // payload types 72-76 plus the marker bit (RFC 5761).
    if (200..=204).contains(&data[1]) {
        return None;
    }
    let seq = u16::from_be_bytes([data[2], data[3]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    Some((ssrc, seq))
}

#[allow(clippy::too_many_arguments)]
fn write(
    rtc: &mut Rtc,
    out: &mut Outgoing,
    rid: Option<Rid>,
    now: Instant,
    payload: Vec<u8>,
    marker: bool,
    exts: ExtensionValues,
    nackable: bool,
) {
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(out.mid, rid) else {
        return;
    };
    let write = RtpWrite::new(out.pt, SeqNo::from(out.seq), out.rtp_time, now, payload)
        .marker(marker)
        .ext_vals(exts)
        .nackable(nackable);
    stream.write_rtp(write);
    out.seq += 1;
    if marker {
        out.stamp_seq += 1;
    }
}

/// Drains the publish connection, counting keyframe requests; returns its
/// next timeout.
fn drain_publish(
    rtc: &mut Rtc,
    outgoing: &mut VecDeque<Datagram>,
    errors: &mut Vec<String>,
    source: SocketAddr,
    keyframe_requested: &mut Vec<(Mid, Option<Rid>)>,
) -> Instant {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return t,
            Ok(Output::Transmit(t)) => outgoing.push_back(Datagram {
                source,
                destination: t.destination,
                contents: t.contents.into(),
            }),
            Ok(Output::Event(RtcEvent::KeyframeRequest(request))) => {
                keyframe_requested.push((request.mid, request.rid));
            }
            Ok(Output::Event(_)) => {}
            Err(e) => {
                errors.push(format!("poll: {e}"));
                return Instant::now() + Duration::from_secs(3600);
            }
        }
    }
}

/// An RTP packet the subscribe connection delivered.
struct Arrived {
    mid: Mid,
    seq: u64,
    pt: Pt,
    payload: std::sync::Arc<[u8]>,
    at: Instant,
    playout_min: Option<Duration>,
}

fn drain_subscribe(
    rtc: &mut Rtc,
    outgoing: &mut VecDeque<Datagram>,
    errors: &mut Vec<String>,
    received: &mut Vec<Arrived>,
    sender_reports: &mut Vec<Mid>,
) -> Instant {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return t,
            Ok(Output::Transmit(t)) => outgoing.push_back(Datagram {
                source: t.source,
                destination: t.destination,
                contents: t.contents.into(),
            }),
            Ok(Output::Event(RtcEvent::RtpPacket(packet))) => {
                let mid = rtc
                    .direct_api()
                    .stream_rx(&packet.header.ssrc)
                    .map(|s| s.mid());
                if let Some(mid) = mid {
                    received.push(Arrived {
                        mid,
                        seq: *packet.seq_no,
                        pt: packet.header.payload_type,
                        payload: packet.payload.clone(),
                        at: packet.timestamp,
                        playout_min: packet
                            .header
                            .ext_vals
                            .play_delay_min
                            .map(|t| Duration::from_secs_f64(t.as_seconds())),
                    });
                }
            }
            Ok(Output::Event(RtcEvent::SenderFeedback(report))) => sender_reports.push(report.mid),
            Ok(Output::Event(_)) => {}
            Err(e) => {
                errors.push(format!("poll: {e}"));
                return Instant::now() + Duration::from_secs(3600);
            }
        }
    }
}
