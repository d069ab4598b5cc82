//! What a load run does: rooms, participants, who publishes what, for how
//! long; and the named presets.

use serde::Serialize;
use std::time::Duration;

/// The shape of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Preset name, or `custom`.
    pub name: String,
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub participants: usize,
    /// Participants per room that publish (the rest only watch).
    pub publishers: usize,
    /// Publishers send a microphone track.
    pub audio: bool,
    /// Publishers send a camera track.
    pub video: bool,
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
    /// samples); the rest are counted from their clear RTP headers.
    pub sample_every: u64,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    /// A named preset.
    pub fn preset(name: &str) -> Option<Self> {
        let base = Plan {
            name: name.to_string(),
            rooms: 1,
            participants: 5,
            publishers: 5,
            audio: true,
            video: true,
            video_bitrate: 1_000_000,
            fps: 30,
            duration: Duration::from_secs(20),
            join_rate: 20.0,
            sample_every: 16,
        };
        Some(match name {
            // Seconds-long, for CI: keeps the tool working.
            "tiny" => Plan {
                participants: 3,
                publishers: 3,
                duration: Duration::from_secs(3),
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
            // 10 publish camera and microphone; 90 watch with microphones muted.
            "large" => Plan {
                participants: 100,
                publishers: 10,
                duration: Duration::from_secs(60),
                ..base
            },
            "fanout" => Plan {
                participants: 201,
                publishers: 1,
                duration: Duration::from_secs(30),
                ..base
            },
            _ => return None,
        })
    }

    /// Names of the presets.
    pub const PRESETS: [&'static str; 5] = ["tiny", "small", "meeting", "large", "fanout"];

    /// All participants of the run.
    pub fn total(&self) -> usize {
        self.rooms * self.participants
    }

    /// Packets per second one publisher sends (audio 50/s; video frames of
    /// at most 1200-byte packets).
    pub fn packets_per_publisher(&self) -> f64 {
        let audio = if self.audio { 50.0 } else { 0.0 };
        let video = if self.video {
            let frame = f64::from(self.video_bitrate) / 8.0 / f64::from(self.fps.max(1));
            (frame / 1200.0).ceil() * f64::from(self.fps)
        } else {
            0.0
        };
        audio + video
    }

    /// Whether participant `i` should receive media (a lone publisher
    /// hears nobody).
    pub fn receives_media(&self, i: usize) -> bool {
        self.publishers > 1 || !i.is_multiple_of(self.participants)
    }

    /// Packets per second the forwarder should send, when all is well.
    pub fn expected_forward_rate(&self) -> f64 {
        let per_room = self.publishers as f64
            * self.packets_per_publisher()
            * (self.participants as f64 - 1.0);
        per_room * self.rooms as f64
    }
}
