//! What a load run does: rooms, participants, who publishes what, for how
//! long, what happens while it runs (churn, a join storm); and the named
//! presets.

use serde::Serialize;
use std::time::Duration;
use zync_sfu::testkit::{MediaShape, SIMULCAST_SHARES};
use zync_tests::participant::{Tile, View};

/// Largest video packet payload the simulated browsers send (the testkit's
/// `MAX_VIDEO_PAYLOAD`).
const VIDEO_PAYLOAD: f64 = 1200.0;
/// A simulated browser sends a keyframe (three times a frame's bytes) this
/// often, besides on request (the testkit's default `keyframe_interval`).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
/// Most participants one run may have: the server under test is started
/// with room for 1000 per room, and every participant holds three sockets.
const MAX_PARTICIPANTS: usize = 1000;
/// Most video bitrate per publisher (4K camera video is ~20 Mbit/s): far
/// more only floods the generator's memory with frames.
const MAX_VIDEO_BITRATE: u32 = 50_000_000;
/// Subscribe m-lines allowed beyond two per other participant: a few lines
/// may wait to be recycled while an offer is in flight.
const SDP_SPARE_M_LINES: usize = 4;
/// Widths of the simulcast layers of a 1280×720 camera, lowest first (the
/// SFU's nominal sizes: the testkit's keyframes carry no picture size).
const LAYER_WIDTHS: [u32; 3] = [320, 640, 1280];
/// A layer covers a tile when it is at least this share of its width (the
/// SFU's rule, `COVER_SHARE` in `sfu/src/core/layers.rs`).
const COVER_SHARE: f64 = 0.85;

/// The shape of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Preset name, or `custom`.
    pub name: String,
    /// Rooms.
    pub rooms: usize,
    /// Participants per room at the start.
    pub participants: usize,
    /// Participants per room that publish camera and microphone (as
    /// `audio` and `video` say); the rest are watchers.
    pub publishers: usize,
    /// Watchers publish a microphone that is muted the way the web client
    /// mutes (`replaceTrack(null)`: the m-line is negotiated, no packet is
    /// sent). Otherwise they publish nothing.
    pub watchers_muted_mic: bool,
    /// Publishers send a microphone track.
    pub audio: bool,
    /// Publishers send a camera track.
    pub video: bool,
    /// Cameras are sent as three simulcast layers (rids `q`, `h`, `f`, at
    /// the web client's 150 / 500 / 1500 kbit/s shares of
    /// `video_bitrate`, which is the full layer's), and follow the SFU's
    /// `publisher-layers` (dynacast), as the web client does.
    pub simulcast: bool,
    /// Publishers also share a screen: one encoding at the testkit's
    /// default (1 Mbit/s at 10 fps, slides with some motion), which every
    /// subscriber shows.
    pub screen: bool,
    /// Publishers whose microphone is open, the first seats; the other
    /// publishers' microphones are muted the way the web client mutes
    /// (negotiated, silent). `None`: every publisher's is open.
    pub open_mics: Option<usize>,
    /// What every subscriber shows of the others' cameras, reported with
    /// `track-view` as the web client does; `None` sends no views (every
    /// camera arrives at its top layer).
    pub view: Option<View>,
    /// Subscribers on a weak downlink.
    pub capped: Option<Capped>,
    /// The server runs with `sfu.bandwidth_estimation` on.
    pub bandwidth_estimation: bool,
    /// What the subscribers' media must meet, beyond every stream arriving.
    pub targets: Option<Targets>,
    /// Microphone packets per second (a browser sends 50: 20 ms Opus frames).
    pub audio_rate: u32,
    /// Video bitrate per publisher, bits/s.
    pub video_bitrate: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Measured time after everyone joined.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Participants joining per second.
    pub join_rate: f64,
    /// Receivers decrypt one packet in this many per stream (latency
    /// samples, payload checks); the rest are counted from their clear RTP
    /// headers.
    pub sample_every: u64,
    /// Leave/rejoin cycles during the measured window.
    pub churn: Option<Churn>,
    /// More people joining at once during the measured window.
    pub storm: Option<Storm>,
    /// Media through `zync-impair`'s relay (loss and delay both ways)
    /// instead of straight to the server.
    pub impairment: Option<Impaired>,
}

/// A lossy path between every simulated participant and the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Impaired {
    /// Percent of datagrams dropped each way.
    pub loss_percent: f64,
    /// One-way delay, milliseconds.
    pub delay_ms: u64,
    /// The delay varies by up to this many milliseconds either way.
    pub jitter_ms: u64,
}

impl Impaired {
    /// As the relay takes it.
    pub fn impairment(&self) -> zync_tests::impair::Impairment {
        zync_tests::impair::Impairment {
            loss: self.loss_percent / 100.0,
            delay: Duration::from_millis(self.delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
        }
    }
}

/// Subscribers receiving through a bottleneck (a rate and a 200 ms queue,
/// the testkit's `Bottleneck`): the last seats of every room.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Capped {
    /// How many, per room.
    pub subscribers: usize,
    /// Their downlink, bits per second.
    pub bits_per_second: u64,
    /// Within this long of the measured window's start they must receive
    /// only the lowest layer (or nothing) of every camera, and all audio.
    #[serde(serialize_with = "seconds")]
    pub converge_within: Duration,
}

/// Participants leaving and rejoining while media flows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Churn {
    /// Leave/rejoin cycles, spread evenly over the window minus `settle`.
    pub cycles: usize,
    /// Quiet time at the end of the window, so the final delivery check
    /// sees the room after every renegotiation finished.
    #[serde(serialize_with = "seconds")]
    pub settle: Duration,
}

/// Loss and latency a preset must stay under.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Targets {
    /// Mean loss over subscribers, %.
    pub loss_percent: f64,
    /// Publisher → subscriber latency p95 as the generator measures it
    /// (its own lateness included), ms.
    pub latency_p95_ms: f64,
}

/// A burst of joins into a running meeting.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Storm {
    /// Participants joining (per room) during the storm. They publish a
    /// muted microphone: each join renegotiates every subscriber (the work
    /// a join costs) without adding packets to forward, so the window
    /// measures join work rather than a doubled forwarding load.
    pub joiners: usize,
    /// Joins per second.
    pub rate: f64,
    /// When the storm starts, from the start of the measured window (the
    /// time before is the steady reference).
    #[serde(serialize_with = "seconds")]
    pub after: Duration,
    /// The SFU's forwarding delay p99 during the storm (its `/metrics`
    /// histogram, which the generator's own lateness does not enter) must
    /// not exceed this.
    pub p99_limit_ms: f64,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Which streams a participant sends packets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sends {
    /// Microphone packets (a muted microphone sends none).
    pub audio: bool,
    /// Camera packets.
    pub video: bool,
    /// Screen share packets.
    pub screen: bool,
}

impl Sends {
    /// What a participant of `shape` sends.
    pub fn of(shape: &MediaShape) -> Self {
        Self {
            audio: shape.audio && !shape.audio_muted,
            video: shape.video,
            screen: shape.screen,
        }
    }

    /// Whether it sends anything.
    pub fn any(self) -> bool {
        self.audio || self.video || self.screen
    }
}

impl Plan {
    /// A named preset.
    pub fn preset(name: &str) -> Option<Self> {
        let base = Plan {
            name: name.to_string(),
            rooms: 1,
            participants: 5,
            publishers: 5,
            watchers_muted_mic: false,
            audio: true,
            video: true,
            simulcast: false,
            screen: false,
            open_mics: None,
            view: None,
            capped: None,
            bandwidth_estimation: false,
            targets: None,
            audio_rate: 50,
            video_bitrate: 1_000_000,
            fps: 30,
            duration: Duration::from_secs(20),
            join_rate: 20.0,
            sample_every: 16,
            churn: None,
            storm: None,
            impairment: None,
        };
        // Churn renegotiates every subscriber twice per cycle, and with 60
        // people all publishing, 60 x 59 streams of each kind flow as well.
        // Browser-like audio alone (50 packets/s) would be 177k packets/s to
        // forward, more than this 2-core box carries next to the generator
        // (~170k in the `large` runs, without churn). So churn sends 100 ms
        // Opus packets (10/s, a length Opus allows) and 48 kbit/s video at
        // 5 fps (one 1200-byte packet a frame): ~16 packets/s per publisher
        // with keyframes, ~56k packets/s in all, leaving CPU for the
        // renegotiations. Receivers decrypt one packet in 4, so the final
        // check sees several payloads of every stream.
        let churn_media = Plan {
            audio_rate: 10,
            video_bitrate: 48_000,
            fps: 5,
            sample_every: 4,
            ..base.clone()
        };
        Some(match name {
            // Seconds-long, for CI: keeps the tool working. Receivers
            // decrypt every packet (cheap at this size): a light receiver
            // that skips a stream's first packets cannot follow a sequence
            // wrap among them (SRTP's rollover counter), and CI must not
            // fail on that one-in-thousands chance.
            "tiny" => Plan {
                participants: 3,
                publishers: 3,
                duration: Duration::from_secs(3),
                sample_every: 1,
                ..base
            },
            // Seconds-long, for CI: keeps the churn logic working.
            "tiny-churn" => Plan {
                participants: 5,
                publishers: 5,
                duration: Duration::from_secs(8),
                sample_every: 1,
                churn: Some(Churn {
                    cycles: 10,
                    settle: Duration::from_secs(4),
                }),
                ..churn_media
            },
            // Seconds-long, for CI: keeps simulcast, views and dynacast
            // working. Each of 6 shows one camera large, two small and
            // pages two out.
            "tiny-grid" => Plan {
                participants: 6,
                publishers: 6,
                simulcast: true,
                open_mics: Some(2),
                video_bitrate: 600_000,
                view: Some(View { large: 1, small: 2 }),
                duration: Duration::from_secs(4),
                sample_every: 1,
                ..base
            },
            "small" => Plan {
                rooms: 4,
                participants: 5,
                publishers: 5,
                ..base
            },
            "meeting" => Plan {
                participants: 25,
                publishers: 25,
                duration: Duration::from_secs(30),
                ..base
            },
            // 10 publish camera and microphone; 90 watch with microphones
            // muted the way the web client mutes.
            "large" => Plan {
                participants: 100,
                publishers: 10,
                watchers_muted_mic: true,
                duration: Duration::from_secs(60),
                ..base
            },
            "fanout" => Plan {
                participants: 201,
                publishers: 1,
                duration: Duration::from_secs(30),
                ..base
            },
            // 200 leave/rejoin cycles over 340 s (one every 1.7 s), then
            // 20 s of quiet. A cycle in a room of 60 costs the SFU about
            // 0.6 s of CPU (two renegotiations of ~59 subscribers with
            // ~120 m-lines each; measured at 0.75 cycles/s, when the box
            // was saturated), so 200 cycles in 60 s fell behind by half
            // and stalled media; at this pace both processes keep up.
            "churn" => Plan {
                participants: 60,
                publishers: 60,
                duration: Duration::from_secs(360),
                churn: Some(Churn {
                    cycles: 200,
                    settle: Duration::from_secs(20),
                }),
                ..churn_media
            },
            // 25 in a meeting for 5 s, then 25 more join at 10/s. Video at
            // 300 kbit/s: the 50 receiving at the end (~135,000 packets/s)
            // stay within what the generator sends and receives on a
            // 2-core box; at 1 Mbit/s it falls up to 150 ms behind and its
            // catch-up bursts, not the joins, set the SFU's delay.
            "join-storm" => Plan {
                participants: 25,
                publishers: 25,
                video_bitrate: 300_000,
                duration: Duration::from_secs(12),
                storm: Some(Storm {
                    joiners: 25,
                    rate: 10.0,
                    after: Duration::from_secs(5),
                    p99_limit_ms: 20.0,
                }),
                ..base
            },
            // A 50-person meeting as the web client holds it: every camera
            // in simulcast (1.5 Mbit/s at the top), five people talking,
            // the other microphones muted, and every viewer showing the
            // first page of a 16-tile grid in thumbnails. Compared with
            // the same room without adaptation (everyone receiving every
            // camera's top layer), see `unadapted_forward_rate`.
            "grid" => Plan {
                participants: 50,
                publishers: 50,
                simulcast: true,
                open_mics: Some(5),
                video_bitrate: 1_500_000,
                view: Some(View {
                    large: 0,
                    small: 16,
                }),
                duration: Duration::from_secs(30),
                ..base
            },
            // Ten people with simulcast cameras, two talking; the last two
            // receive through 400 kbit/s. Bandwidth estimation must bring
            // those two down to the lowest layers (pausing what does not
            // fit) within 3 s without touching their audio, while the
            // others keep the top layer. Receivers decrypt every packet:
            // what they do not decrypt, their transport-wide congestion
            // feedback would report lost.
            "weak" => Plan {
                participants: 10,
                publishers: 10,
                simulcast: true,
                open_mics: Some(2),
                video_bitrate: 1_500_000,
                capped: Some(Capped {
                    subscribers: 2,
                    bits_per_second: 400_000,
                    converge_within: Duration::from_secs(3),
                }),
                bandwidth_estimation: true,
                sample_every: 1,
                duration: Duration::from_secs(20),
                ..base
            },
            // A webinar: two presenters with camera, microphone and screen
            // share; 498 watchers who joined with microphone and camera
            // off (the web client then publishes nothing) show the screen
            // large and the two presenters in thumbnails, so cameras
            // arrive at their lowest layer. (Watchers with muted
            // microphones would give every subscriber an m-line per
            // watcher: see `large` for that cost at 100.)
            "webinar" => Plan {
                participants: 500,
                publishers: 2,
                simulcast: true,
                screen: true,
                video_bitrate: 1_500_000,
                view: Some(View { large: 0, small: 2 }),
                targets: Some(Targets {
                    loss_percent: 0.5,
                    latency_p95_ms: 50.0,
                }),
                duration: Duration::from_secs(30),
                ..base
            },
            _ => return None,
        })
    }

    /// Names of the presets.
    pub const PRESETS: [&'static str; 12] = [
        "tiny",
        "tiny-churn",
        "tiny-grid",
        "small",
        "meeting",
        "large",
        "fanout",
        "churn",
        "join-storm",
        "grid",
        "weak",
        "webinar",
    ];

    /// Why this plan cannot run, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.rooms == 0 || self.participants < 2 || self.publishers == 0 {
            return Err(
                "a run needs at least one room of two participants with a publisher".into(),
            );
        }
        if self.publishers > self.participants {
            return Err("more publishers than participants".into());
        }
        let most = self.room_size().saturating_mul(self.rooms);
        if self.room_size() > MAX_PARTICIPANTS || most > MAX_PARTICIPANTS {
            return Err(format!("at most {MAX_PARTICIPANTS} participants per run"));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(600) {
            return Err("runs are bounded: more than 0 s, at most 600 s".into());
        }
        if !(self.join_rate.is_finite() && self.join_rate >= 0.1) {
            return Err("the join rate must be at least 0.1 per second".into());
        }
        if !(self.audio || self.video) {
            return Err("publishers must send audio or video".into());
        }
        if self.fps == 0 || self.audio_rate == 0 || self.sample_every == 0 {
            return Err("frame rate, audio rate and sampling must be positive".into());
        }
        if self.video_bitrate > MAX_VIDEO_BITRATE {
            return Err(format!(
                "at most {} kbit/s of video per publisher",
                MAX_VIDEO_BITRATE / 1000
            ));
        }
        if let Some(churn) = self.churn
            && churn.settle + self.check_window() > self.duration
        {
            return Err(format!(
                "churn needs its settle time plus the {:.1} s check window within the duration",
                self.check_window().as_secs_f64()
            ));
        }
        if let Some(storm) = self.storm
            && (!(storm.rate.is_finite() && storm.rate >= 0.1) || storm.after >= self.duration)
        {
            return Err(
                "a join storm needs a rate of at least 0.1/s and to start in the window".into(),
            );
        }
        Ok(())
    }

    /// All accounts the run signs up: everyone at the start, and the storm's
    /// joiners (churn rejoins with the leaver's account).
    pub fn accounts(&self) -> usize {
        self.rooms * self.room_size()
    }

    /// Participants per room at the most (after a storm).
    pub fn room_size(&self) -> usize {
        self.participants + self.storm.map_or(0, |s| s.joiners)
    }

    /// What the participant in `seat` of its room publishes.
    pub fn shape(&self, seat: usize) -> MediaShape {
        let media = MediaShape {
            audio_rate: self.audio_rate,
            video_bitrate: self.video_bitrate,
            fps: self.fps,
            simulcast: self.simulcast,
            ..MediaShape::default()
        };
        if seat < self.publishers {
            MediaShape {
                audio: self.audio,
                audio_muted: !self.mic_open(seat),
                video: self.video,
                screen: self.screen,
                ..media
            }
        } else if seat >= self.participants || self.watchers_muted_mic {
            // Storm joiners always come with a muted microphone (see `Storm`).
            MediaShape {
                audio: true,
                audio_muted: true,
                video: false,
                ..media
            }
        } else {
            MediaShape {
                audio: false,
                video: false,
                ..media
            }
        }
    }

    /// Whether the participant in `seat` sends microphone packets.
    fn mic_open(&self, seat: usize) -> bool {
        self.audio && seat < self.publishers.min(self.open_mics.unwrap_or(usize::MAX))
    }

    /// Whether the participant in `seat` receives through a capped downlink.
    pub fn is_capped(&self, seat: usize) -> bool {
        self.capped
            .is_some_and(|c| seat < self.participants && seat + c.subscribers >= self.participants)
    }

    /// The downlink cap of the participant in `seat`, bits/s.
    pub fn downlink_of(&self, seat: usize) -> Option<u64> {
        self.capped
            .filter(|_| self.is_capped(seat))
            .map(|c| c.bits_per_second)
    }

    /// The simulcast layer (0 without simulcast) the subscriber in `sub`
    /// should receive of the camera in `sender`'s seat, by its view, or
    /// `None` when it shows none of it (paged out, or no camera). For a
    /// capped subscriber this is what it would get uncapped.
    pub fn camera_layer(&self, sub: usize, sender: usize) -> Option<u8> {
        if !self.video || sender >= self.publishers || sender == sub {
            return None;
        }
        if !self.simulcast {
            return Some(0);
        }
        let Some(view) = self.view else {
            return Some(2);
        };
        // The others' cameras in join (seat) order, as the client tiles them.
        let position = if sender < sub { sender } else { sender - 1 };
        match view.tile(position) {
            Tile::Hidden => None,
            Tile::Shown(width, _) => Some(layer_covering(width)),
        }
    }

    /// Bits per second of a camera's `layer`.
    fn layer_bitrate(&self, layer: u8) -> f64 {
        let share = if self.simulcast {
            SIMULCAST_SHARES
                .get(usize::from(layer))
                .map_or(1.0, |s| s.1)
        } else {
            1.0
        };
        f64::from(self.video_bitrate) * share
    }

    /// Video packets per second of one camera layer sending `bitrate`.
    fn packets_per_second_at(&self, bitrate: f64) -> f64 {
        encoding_packets_per_second(bitrate, self.fps)
    }

    /// Packets per second of a publisher's screen share (0 without).
    fn screen_packets_per_second(&self) -> f64 {
        if !self.screen {
            return 0.0;
        }
        let shape = MediaShape::default();
        encoding_packets_per_second(f64::from(shape.screen_bitrate), shape.screen_fps)
    }

    /// Video packets per second of one publisher's top layer.
    pub fn video_packets_per_second(&self) -> f64 {
        if !self.video {
            return 0.0;
        }
        let top = if self.simulcast { 2 } else { 0 };
        self.packets_per_second_at(self.layer_bitrate(top))
    }

    /// Packets per second the subscriber in `sub` should get from the
    /// participant in `sender`.
    fn pair_rate(&self, sub: usize, sender: usize) -> f64 {
        let audio = if self.mic_open(sender) && sender != sub {
            f64::from(self.audio_rate)
        } else {
            0.0
        };
        let video = self.camera_layer(sub, sender).map_or(0.0, |layer| {
            self.packets_per_second_at(self.layer_bitrate(layer))
        });
        let screen = if sender < self.publishers && sender != sub {
            self.screen_packets_per_second()
        } else {
            0.0
        };
        audio + video + screen
    }

    /// Whether participant `i` (of the initial population) should receive
    /// media (a lone publisher hears nobody).
    pub fn receives_media(&self, i: usize) -> bool {
        self.publishers > 1 || !i.is_multiple_of(self.participants)
    }

    /// Packets per second the forwarder should send with the initial
    /// population, when all is well: what every subscriber's view asks of
    /// every other participant (a muted microphone sends nothing).
    pub fn expected_forward_rate(&self) -> f64 {
        let n = self.participants;
        let per_room: f64 = (0..n)
            .flat_map(|sub| (0..n).map(move |sender| (sub, sender)))
            .map(|(sub, sender)| self.pair_rate(sub, sender))
            .sum();
        per_room * self.rooms as f64
    }

    /// Whether subscribers' streams adapt (simulcast, views, capped
    /// downlinks): the relay baseline cannot run such a plan.
    pub fn adapts(&self) -> bool {
        self.simulcast || self.view.is_some() || self.capped.is_some()
    }

    /// What the forwarder would send without adaptation: every subscriber
    /// receiving every camera at its top layer (and the same audio).
    pub fn unadapted_forward_rate(&self) -> f64 {
        let plain = Plan {
            view: None,
            ..self.clone()
        };
        plain.expected_forward_rate()
    }

    /// How long the final delivery check looks back: two seconds, or long
    /// enough that the slowest stream has several decrypted (sampled)
    /// packets in it.
    pub fn check_window(&self) -> Duration {
        let audio = if self.audio {
            f64::from(self.audio_rate)
        } else {
            f64::INFINITY
        };
        let video = if self.video {
            // The lowest layer: every subscriber may be on it.
            self.packets_per_second_at(self.layer_bitrate(0))
        } else {
            f64::INFINITY
        };
        let slowest = audio.min(video).max(0.1);
        let seconds = (4.0 * self.sample_every as f64 / slowest).clamp(2.0, 30.0);
        Duration::from_secs_f64(seconds)
    }

    /// Most m-lines a subscribe offer may have: two per other participant
    /// at the most populous moment (camera and microphone) and a screen
    /// per other publisher, plus a few awaiting recycling. Churn must not
    /// make it grow.
    pub fn sdp_m_line_bound(&self) -> usize {
        let screens = if self.screen { self.publishers } else { 0 };
        2 * (self.room_size() - 1) + screens + SDP_SPARE_M_LINES
    }
}

/// Packets per second of one video encoding sending `bitrate` at `fps`,
/// keyframes included (a keyframe is three frames' bytes, every
/// [`KEYFRAME_INTERVAL`]), as the testkit packetizes it.
fn encoding_packets_per_second(bitrate: f64, fps: u32) -> f64 {
    let fps = fps.max(1);
    let frame = bitrate / 8.0 / f64::from(fps);
    let packets = (frame / VIDEO_PAYLOAD).ceil().max(1.0);
    let keyframe_extra = (frame * 3.0 / VIDEO_PAYLOAD).ceil() - packets;
    packets * f64::from(fps) + keyframe_extra / KEYFRAME_INTERVAL.as_secs_f64()
}

/// The smallest layer of a 1280×720 camera that covers a tile `width`
/// device pixels wide (the SFU's rule).
fn layer_covering(width: u32) -> u8 {
    LAYER_WIDTHS
        .iter()
        .position(|&w| f64::from(w) >= f64::from(width) * COVER_SHARE)
        .map_or(2, |at| at as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for name in Plan::PRESETS {
            let plan = Plan::preset(name).expect("preset");
            assert_eq!(plan.check(), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_webinar_forwards_two_presenters_to_everyone() {
        let webinar = Plan::preset("webinar").expect("webinar");
        assert!(!Sends::of(&webinar.shape(2)).any(), "watchers send nothing");
        assert!(Sends::of(&webinar.shape(0)).screen);
        // Per presenter and viewer: audio 50, the camera's q (625-byte
        // frames at 30 fps, keyframes two packets every 3 s) and the
        // screen (1 Mbit/s at 10 fps: 11 packets a frame, keyframes 32).
        let pair = 50.0 + (30.0 + 1.0 / 3.0) + (110.0 + 21.0 / 3.0);
        let expected = pair * 2.0 * 499.0;
        assert!((webinar.expected_forward_rate() - expected).abs() < 1e-6);
    }

    #[test]
    fn muted_microphones_send_nothing() {
        let large = Plan::preset("large").expect("large");
        assert!(Sends::of(&large.shape(0)).audio);
        let watcher = large.shape(10);
        assert!(watcher.audio && watcher.audio_muted && !watcher.video);
        assert!(!Sends::of(&watcher).any());
        // 1 Mbit/s at 30 fps: 4 packets a frame, keyframes 11 packets.
        let per_publisher = 50.0 + 120.0 + 7.0 / 3.0;
        let expected = 10.0 * per_publisher * 99.0;
        assert!((large.expected_forward_rate() - expected).abs() < 1e-6);
    }

    #[test]
    fn churn_checks_several_samples_per_stream() {
        let churn = Plan::preset("churn").expect("churn");
        // ~5.7 video packets/s, one in 4 decrypted: 4 in ~2.8 seconds.
        let window = churn.check_window().as_secs_f64();
        assert!((window - 16.0 / (5.0 + 2.0 / 3.0)).abs() < 1e-3, "{window}");
        // Audio at 50 packets/s, video at 30 fps, one in 16: two seconds.
        let meeting = Plan::preset("meeting").expect("meeting");
        assert_eq!(meeting.check_window(), Duration::from_secs(2));
        assert_eq!(churn.sdp_m_line_bound(), 2 * 59 + 4);
    }

    #[test]
    fn a_grid_page_of_thumbnails_gets_the_lowest_layer_of_its_page_only() {
        let grid = Plan::preset("grid").expect("grid");
        // Seat 0 shows seats 1..=16; seat 20 shows seats 0..=15.
        assert_eq!(grid.camera_layer(0, 1), Some(0));
        assert_eq!(grid.camera_layer(0, 16), Some(0));
        assert_eq!(grid.camera_layer(0, 17), None);
        assert_eq!(grid.camera_layer(20, 15), Some(0));
        assert_eq!(grid.camera_layer(20, 16), None);
        assert_eq!(grid.camera_layer(3, 3), None);
        // Audio of 5 open microphones to 49 each; 16 thumbnails of 30
        // frames a second (one packet each, a 2-packet keyframe every 3 s).
        let audio = 5.0 * 49.0 * 50.0;
        let thumbnails = 50.0 * 16.0 * (30.0 + 1.0 / 3.0);
        assert!((grid.expected_forward_rate() - (audio + thumbnails)).abs() < 1e-6);
        // Unadapted: every camera's 1.5 Mbit/s layer (6 packets a frame,
        // 16-packet keyframes) to the 49 others.
        let full = 50.0 * 49.0 * (180.0 + 10.0 / 3.0);
        assert!((grid.unadapted_forward_rate() - (audio + full)).abs() < 1e-6);
        assert!(grid.unadapted_forward_rate() / grid.expected_forward_rate() >= 3.0);
    }

    #[test]
    fn tiles_get_the_smallest_layer_that_covers_them() {
        assert_eq!(layer_covering(320), 0);
        assert_eq!(layer_covering(376), 0);
        assert_eq!(layer_covering(480), 1);
        assert_eq!(layer_covering(1280), 2);
        assert_eq!(layer_covering(3840), 2);
    }

    #[test]
    fn the_weak_preset_caps_the_last_two_seats() {
        let weak = Plan::preset("weak").expect("weak");
        assert_eq!(weak.downlink_of(7), None);
        assert_eq!(weak.downlink_of(8), Some(400_000));
        assert_eq!(weak.downlink_of(9), Some(400_000));
        assert!(weak.shape(1).simulcast && !weak.shape(1).audio_muted);
        assert!(weak.shape(2).audio_muted);
        assert_eq!(weak.camera_layer(8, 0), Some(2));
    }

    #[test]
    fn bad_plans_are_refused() {
        let mut plan = Plan::preset("tiny").expect("tiny");
        plan.join_rate = f64::NAN;
        assert!(plan.check().is_err());
        let mut plan = Plan::preset("tiny").expect("tiny");
        plan.rooms = usize::MAX;
        assert!(plan.check().is_err());
        let mut plan = Plan::preset("tiny").expect("tiny");
        plan.video_bitrate = u32::MAX;
        assert!(plan.check().is_err());
    }
}
