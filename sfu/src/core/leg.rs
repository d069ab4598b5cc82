//! One peer connection of a participant: a str0m `Rtc` in RTP mode, fed
//! inputs and drained to its next timeout after every one of them.
//!
//! Everything str0m does for one participant happens behind this type, so a
//! failure (an error, or even a panic inside str0m) is caught here and turns
//! into a [`LegError`] that removes that participant only.

use super::bandwidth::INITIAL_ESTIMATE_BPS;
use super::outbox::Outbox;
use super::{CoreConfig, Transport};
use crate::api::{Kind, Leg};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::DirectApi;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

/// The video codec every participant of this SFU uses, so that anyone can
/// decode what anyone else sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (the default: every browser has it).
    Vp8,
    /// H.264.
    H264,
}

/// What a drain produced that the room must act on.
// Packets are nearly all of these events; boxing them would cost an
// allocation per packet to save moving a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LegEvent {
    /// Media from the browser.
    Rtp(RtpPacket),
    /// The browser asks for a keyframe on one of our outgoing m-lines.
    KeyframeRequest(Mid),
    /// The browser's offer added an m-line.
    MediaAdded {
        /// Its mid.
        mid: Mid,
        /// Audio or video.
        kind: Kind,
        /// Direction from our side.
        direction: Direction,
    },
    /// An m-line changed direction.
    MediaChanged {
        /// Its mid.
        mid: Mid,
        /// New direction from our side.
        direction: Direction,
    },
    /// ICE and DTLS are up.
    Connected,
    /// Media now goes to another address: the browser moved to another
    /// path (what was sent on the old one while it was failing is lost).
    PathChanged,
    /// The browser sent this many more NACKs (from str0m's egress stats).
    Nacks(u64),
    /// The estimate of what the path to the browser carries moved
    /// (subscribe connections with bandwidth estimation; read it with
    /// [`LegRtc::estimate`]).
    EstimateMoved,
    /// The browser asks for these packets (its sequence numbers) again on
    /// our outgoing m-line `mid`.
    Resend {
        /// The m-line.
        mid: Mid,
        /// Extended sequence numbers of the outgoing stream.
        seqs: Vec<u64>,
    },
}

/// Why a leg gave up.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    /// str0m reported an error for this connection.
    #[error("webrtc error: {0}")]
    Rtc(#[from] RtcError),
    /// ICE lost the connection (no consent checks for too long).
    #[error("ICE disconnected")]
    IceDisconnected,
    /// The connection was closed (DTLS close or failure).
    #[error("connection closed")]
    Closed,
    /// The connection could not be set up.
    #[error("{0}")]
    Setup(String),
    /// str0m panicked; the connection is discarded as the str0m docs advise.
    #[error("internal error in the WebRTC stack")]
    Panicked,
}

/// One `Rtc` with the bookkeeping the SFU needs around it.
pub struct LegRtc {
    /// The connection.
    pub rtc: Rtc,
    /// Our ICE ufrag (the STUN USERNAME prefix that routes new flows here).
    pub ufrag: String,
    /// When str0m next wants `handle_input(Timeout)`.
    pub next_timeout: Instant,
    /// Remote addresses routed to this leg (to unregister on removal).
    pub addrs: Vec<(Transport, SocketAddr)>,
    /// Last datagram received, for the media timeout.
    pub last_heard: Instant,
    /// Whether ICE/DTLS completed at least once.
    pub connected: bool,
    /// Where str0m sends media (the path the browser chose).
    send_to: Option<SocketAddr>,
    /// Cumulative NACKs per outgoing m-line, as last reported by str0m.
    nacks: Vec<(Mid, u64)>,
    /// The latest round trip str0m measured to the browser (from the
    /// receiver reports of what we send it).
    round_trip: Option<Duration>,
}

impl LegRtc {
    /// A new connection in RTP mode, ICE-lite, advertising the core's
    /// candidate, with the core's DTLS certificate.
    pub fn new(now: Instant, core: &CoreConfig, leg: Leg) -> Result<Self, LegError> {
        let candidate = core.candidate;
        let config = Rtc::builder()
            // One certificate for all: generating a key pair per connection
            // (two per participant) would run on the worker that forwards
            // the room's media, at every join.
            .set_dtls_cert(core.dtls_cert.clone())
            .set_rtp_mode(true)
            // Media datagrams skip str0m's timer pass (every stream's
            // timers and the pacer's queue scan) unless a timer is due; the
            // worker runs it at the deadline str0m reports.
            .set_lazy_media_timeouts(true)
            .set_ice_lite(true)
            .clear_codecs()
            // Opus with RED (RFC 2198): str0m answers RED before Opus, so
            // Chromium sends every packet with the previous one inside,
            // and a lost packet on either hop is rebuilt at the receiver.
            .enable_opus(true, true)
            // Once a second: how we learn NACK counts for metrics.
            .set_stats_interval(Some(std::time::Duration::from_secs(1)))
            // Forwarded packets keep the browser's size; don't warn on them.
            .set_mtu(str0m::DATAGRAM_MTU_TARGET..=1500)
            // str0m's per-stream resend cache limit until the room switches
            // a subscribed stream to external resends (NACKs are answered
            // from the track's history); kept well under the default 1000.
            .set_send_buffer_video(300);
        let config = match core.codec {
            VideoCodec::Vp8 => config.enable_vp8(true),
            VideoCodec::H264 => config.enable_h264(true),
        };
        let config = match leg {
            // The browser's choice; simulcast needs the stream ids.
            Leg::Publish => config,
            // Only what forwarded packets carry: every m-line of every
            // subscribe SDP lists these (a subscriber's SDP has one m-line
            // per track it receives), and each one written costs bytes per
            // packet. Not abs-send-time: with transport-cc negotiated,
            // browsers estimate bandwidth from TWCC.
            Leg::Subscribe => config
                .enable_bwe(
                    core.bandwidth_estimation
                        .then(|| Bitrate::bps(INITIAL_ESTIMATE_BPS)),
                )
                .clear_extension_map()
                .set_extension(1, Extension::AudioLevel)
                .set_extension(3, Extension::TransportSequenceNumber)
                .set_extension(4, Extension::RtpMid)
                // Written only while a subscriber needs repairs
                // (`crate::core::playout`).
                .set_extension(6, Extension::PlayoutDelay)
                .set_extension(13, Extension::VideoOrientation),
        };
        let mut rtc = config.build(now);
        let candidate = Candidate::host(candidate, "udp")
            .map_err(|e| LegError::Setup(format!("cannot advertise {candidate}: {e}")))?;
        rtc.add_local_candidate(candidate);
        if let Some(tcp) = core.tcp_candidate {
            // Passive: browsers connect to it (RFC 6544). Its type
            // preference is below UDP host candidates', so browsers use it
            // only when UDP does not get through.
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| LegError::Setup(format!("cannot advertise TCP {tcp}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut leg = Self {
            rtc,
            ufrag,
            next_timeout: now,
            addrs: Vec::new(),
            last_heard: now,
            connected: false,
            send_to: None,
            nacks: Vec::new(),
            round_trip: None,
        };
        leg.drain(&mut Outbox::default(), &mut Vec::new())?;
        Ok(leg)
    }

    /// Feeds a datagram. `Ok(false)` means str0m refused it (counted as
    /// dropped; the connection carries on).
    pub fn receive(
        &mut self,
        now: Instant,
        (transport, source): (Transport, SocketAddr),
        destination: SocketAddr,
        contents: &[u8],
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<bool, LegError> {
        let Ok(contents) = contents.try_into() else {
            return Ok(false);
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: match transport {
                    Transport::Udp => Protocol::Udp,
                    Transport::Tcp => Protocol::Tcp,
                },
                source,
                destination,
                contents,
            },
        );
        let accepted = guarded(|| self.rtc.handle_input(input))?.is_ok();
        if accepted {
            self.last_heard = now;
        }
        self.drain(transmits, events)?;
        Ok(accepted)
    }

    /// Takes note of a new ICE ufrag (after an ICE restart); returns the
    /// one it replaces.
    pub fn update_ufrag(&mut self) -> Option<String> {
        let current = self.rtc.direct_api().local_ice_credentials().ufrag;
        (current != self.ufrag).then(|| std::mem::replace(&mut self.ufrag, current))
    }

    /// Advances time.
    pub fn timeout(
        &mut self,
        now: Instant,
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<(), LegError> {
        guarded(|| self.rtc.handle_input(Input::Timeout(now)))??;
        self.drain(transmits, events)
    }

    /// Runs `change` (a mutation of the `Rtc`), then drains.
    pub fn mutate<T>(
        &mut self,
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
        change: impl FnOnce(&mut Rtc) -> T,
    ) -> Result<T, LegError> {
        let result = guarded(|| change(&mut self.rtc))?;
        self.drain(transmits, events)?;
        Ok(result)
    }

    /// The latest round trip to the browser, once it reported on something
    /// we send it.
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    /// The estimator's current estimate of the path to the browser, bits
    /// per second (subscribe connections with bandwidth estimation).
    pub fn estimate(&self) -> Option<u64> {
        self.rtc.bwe_estimate().map(|b| b.as_u64())
    }

    /// Tells the estimator what we would like to send (`bps`): when the
    /// estimate is lower, it probes the path for more (bounded padding
    /// bursts, see vendor/README.md).
    pub fn set_desired_bitrate(
        &mut self,
        bps: u64,
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<(), LegError> {
        self.mutate(transmits, events, |rtc| {
            rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(bps));
        })
    }

    /// Changes settings of the `Rtc` that produce no output and so need no
    /// drain (a send stream's resend cache, say).
    pub fn configure<T>(&mut self, change: impl FnOnce(&mut Rtc) -> T) -> Result<T, LegError> {
        guarded(|| change(&mut self.rtc))
    }

    /// Sends one RTP packet on the send stream `ssrc` at once: str0m writes
    /// and encrypts it straight into the outbox, without a poll (the patched
    /// `send_rtp_now`, see vendor/README.md). `Ok(false)` when the
    /// connection cannot send media yet (ICE or DTLS not up).
    pub fn send_now(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        write: &RtpWrite,
        transmits: &mut Outbox,
    ) -> Result<bool, LegError> {
        self.push_rtp(transmits, |api, buf| {
            api.send_rtp_now(ssrc, write, now, buf)
        })
    }

    /// Starts loading the send stream `ssrc` into the CPU's caches, for a
    /// [`Self::send_now`] on it next (each packet of a batch goes out on
    /// another stream, and waiting for its state was the largest part of
    /// str0m's own per-packet time).
    pub fn prefetch(&self, ssrc: Ssrc) {
        self.rtc.prefetch_stream_tx(ssrc);
    }

    /// Resends a packet the browser NACKed on the RTX stream of `ssrc`
    /// (`write` carries its original sequence number), straight into the
    /// outbox. `Ok(false)` when it cannot (not connected, no RTX).
    pub fn resend_now(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        write: &RtpWrite,
        transmits: &mut Outbox,
    ) -> Result<bool, LegError> {
        self.push_rtp(transmits, |api, buf| {
            api.resend_rtp_now(ssrc, write, now, buf)
        })
    }

    /// Lets `send` append one datagram to the outbox, guarded.
    fn push_rtp(
        &mut self,
        transmits: &mut Outbox,
        send: impl FnOnce(&mut DirectApi, &mut Vec<u8>) -> Option<(SocketAddr, SocketAddr)>,
    ) -> Result<bool, LegError> {
        let rtc = &mut self.rtc;
        guarded(|| transmits.push_with(|buf| send(&mut rtc.direct_api(), buf)))
    }

    /// The SSRC str0m sends `mid` with, once the m-line is negotiated.
    pub fn send_stream_of(&mut self, mid: Mid) -> Option<Ssrc> {
        self.rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| s.ssrc())
    }

    /// Asks the browser for a keyframe on the incoming m-line `mid` (of the
    /// simulcast layer `rid`).
    pub fn request_keyframe(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<bool, LegError> {
        self.mutate(transmits, events, |rtc| {
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_rx_by_mid(mid, rid) else {
                return false;
            };
            stream.request_keyframe(KeyframeRequestKind::Pli);
            true
        })
    }

    /// Polls str0m until it only has a timeout left, sorting its output.
    pub fn drain(
        &mut self,
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<(), LegError> {
        loop {
            match guarded(|| self.rtc.poll_output())?? {
                Output::Timeout(at) => {
                    self.next_timeout = at;
                    self.note_path(events);
                    return Ok(());
                }
                Output::Transmit(t) => transmits.push(&t),
                Output::Event(event) => self.on_event(event, events)?,
            }
        }
    }

    /// Notes where str0m sends media: a new destination means the browser
    /// moved to another path (it switched candidate pairs, or ICE restarted
    /// after a network change).
    fn note_path(&mut self, events: &mut Vec<LegEvent>) {
        let Some(to) = self.rtc.direct_api().send_destination() else {
            return;
        };
        if self.send_to.replace(to).is_some_and(|from| from != to) {
            events.push(LegEvent::PathChanged);
        }
    }

    fn on_event(&mut self, event: Event, events: &mut Vec<LegEvent>) -> Result<(), LegError> {
        match event {
            Event::RtpPacket(packet) => events.push(LegEvent::Rtp(packet)),
            Event::KeyframeRequest(request) => events.push(LegEvent::KeyframeRequest(request.mid)),
            Event::ResendRequest(request) => events.push(LegEvent::Resend {
                mid: request.mid,
                seqs: request.seq_nos.iter().map(|s| **s).collect(),
            }),
            Event::MediaAdded(added) => events.push(LegEvent::MediaAdded {
                mid: added.mid,
                kind: match added.kind {
                    MediaKind::Audio => Kind::Audio,
                    MediaKind::Video => Kind::Video,
                },
                direction: added.direction,
            }),
            Event::MediaChanged(changed) => events.push(LegEvent::MediaChanged {
                mid: changed.mid,
                direction: changed.direction,
            }),
            Event::Connected => {
                self.connected = true;
                events.push(LegEvent::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err(LegError::IceDisconnected);
            }
            Event::Closed => return Err(LegError::Closed),
            // A smoothed estimate moved (str0m's events average seconds
            // of values, so the room reads the current one instead).
            Event::EgressBitrateEstimate(BweKind::Twcc { .. }) => {
                events.push(LegEvent::EstimateMoved);
            }
            Event::MediaEgressStats(stats) => {
                if let Some(rtt) = stats.rtt {
                    self.round_trip = Some(rtt);
                }
                let seen = match self.nacks.iter_mut().find(|(mid, _)| *mid == stats.mid) {
                    Some((_, seen)) => seen,
                    None => {
                        self.nacks.push((stats.mid, 0));
                        &mut self.nacks.last_mut().expect("just pushed").1
                    }
                };
                if stats.nacks > *seen {
                    events.push(LegEvent::Nacks(stats.nacks - *seen));
                    *seen = stats.nacks;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Runs `f`, turning a panic inside str0m into [`LegError::Panicked`].
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, LegError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| LegError::Panicked)
}
