//! The simulated participants of a run through Zync: who is in which room
//! and publishes what, joining and leaving (churn, a join storm), and what
//! they received: packet totals, latency samples, the largest subscribe
//! offer, and the check that everyone receives everyone.

use crate::plan::{Plan, Sends};
use crate::report::{Delivery, SdpSize};
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use zync_sfu::testkit::sim::Rng;
use zync_sfu::{ParticipantId, Source};
use zync_tests::Client;
use zync_tests::participant::{Observed, Receiving, TestParticipant};

/// Longest a join (WebSocket, `join-meeting`, the welcome) may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a polite leave (`leave-meeting`, closing the socket) may take;
/// after that the participant is dropped, which kills its task.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures listed one by one; the rest are only counted.
const FAILURES_LISTED: usize = 20;
/// A failing stream whose first sequence number was this close below the
/// 16-bit wrap gets a hint in its explanation.
const WRAP_HINT: u64 = 64;
/// Seed of the churn's choice of who leaves, so runs are repeatable.
const CHURN_SEED: u64 = 0x5eed_c4a2;

/// Packet counters summed over participants at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// RTP packets received.
    pub packets: u64,
    /// Their bytes, on the wire.
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// One simulated participant and where it sits.
struct Member {
    person: TestParticipant,
    /// Its media id (the welcome's `self.id`).
    id: ParticipantId,
    /// Index of its account in the run's sign-ups.
    account: usize,
    room: usize,
    /// Its seat: `< participants` for the initial population.
    seat: usize,
    sends: Sends,
}

/// Counters a participant received per (sender, source): correctly
/// labelled payloads (decrypted samples whose stamp names the sender and
/// source its m-line is labelled with).
type Labelled = HashMap<(ParticipantId, Source), u64>;

/// RTP packets a participant counted per incoming SSRC (all of them, from
/// the clear headers, decrypted or not).
type Arrived = HashMap<u32, u64>;

/// Everyone's counts at the start of the delivery check.
pub struct DeliverySnapshot {
    at: Instant,
    counts: HashMap<ParticipantId, (Labelled, Arrived)>,
}

/// Latency samples kept per (subscriber, sender, source), as lengths of
/// the sample vectors: a later look takes only what came after.
pub type LatencyMarks = HashMap<(ParticipantId, ParticipantId, Source), usize>;

/// The run's participants, present and departed.
pub struct Crowd<'a> {
    plan: &'a Plan,
    clients: &'a [Client],
    slugs: Vec<String>,
    epoch: Instant,
    /// Present now (in join order until churn reorders them).
    members: Vec<Member>,
    /// Counters of members who left, so totals never go back.
    departed: Totals,
    /// Latency samples (µs) of members who left.
    departed_latencies: Vec<u64>,
    /// Loss (%) of members who left.
    departed_losses: Vec<f64>,
    /// The largest subscribe offer of each member who left.
    departed_offers: Vec<OfferRecord>,
    rng: Rng,
    /// Leave/rejoin cycles done.
    pub cycles: usize,
}

impl<'a> Crowd<'a> {
    /// Nobody yet; `clients` are the run's accounts, `slugs` its rooms.
    pub fn new(plan: &'a Plan, clients: &'a [Client], slugs: Vec<String>, epoch: Instant) -> Self {
        Self {
            plan,
            clients,
            slugs,
            epoch,
            members: Vec::new(),
            departed: Totals::default(),
            departed_latencies: Vec::new(),
            departed_losses: Vec::new(),
            departed_offers: Vec::new(),
            rng: Rng::new(CHURN_SEED),
            cycles: 0,
        }
    }

    /// The account of `seat` in `room` (each room's accounts are
    /// consecutive, the storm's joiners after the initial population).
    fn account(&self, room: usize, seat: usize) -> usize {
        room * self.plan.room_size() + seat
    }

    /// Joins `seat` of `room` with its account and the plan's shape for it.
    pub async fn join(&mut self, room: usize, seat: usize) -> Result<()> {
        let account = self.account(room, seat);
        self.join_as(account, room, seat).await
    }

    /// Joins `seat` of `room` as `account` (within [`JOIN_TIMEOUT`]).
    async fn join_as(&mut self, account: usize, room: usize, seat: usize) -> Result<()> {
        let client = self.clients.get(account).context("no such account")?;
        let slug = self.slugs.get(room).context("no such room")?;
        let shape = self.plan.shape(seat);
        let receiving = Receiving {
            epoch: self.epoch,
            sample_every: Some(self.plan.sample_every),
            view: self.plan.view,
            downlink_bps: self.plan.downlink_of(seat),
        };
        let joining = TestParticipant::join_with(client, slug, shape, receiving);
        let person = tokio::time::timeout(JOIN_TIMEOUT, joining)
            .await
            .with_context(|| format!("account {account} joining: timed out"))?
            .with_context(|| format!("account {account} joining"))?;
        let id = u64::from_str_radix(&person.id, 16)
            .map(ParticipantId)
            .context("participant id is not hex")?;
        self.members.push(Member {
            person,
            id,
            account,
            room,
            seat,
            sends: Sends::of(&shape),
        });
        Ok(())
    }

    /// The initial population, at the plan's join rate.
    pub async fn join_initial(&mut self) -> Result<()> {
        let gap = Duration::from_secs_f64(1.0 / self.plan.join_rate);
        let total = self.plan.rooms * self.plan.participants;
        for i in 0..total {
            let started = Instant::now();
            let (room, seat) = (i / self.plan.participants, i % self.plan.participants);
            self.join(room, seat).await?;
            if (i + 1) % 10 == 0 || i + 1 == total {
                eprintln!("joined {}/{total}", i + 1);
            }
            tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
        }
        Ok(())
    }

    /// One churn cycle: a participant picked at random leaves politely, and
    /// its account joins again in the same seat (a new participant id, as
    /// a reloaded browser tab would get).
    pub async fn cycle(&mut self) -> Result<()> {
        if self.members.is_empty() {
            return Ok(());
        }
        let pick = (self.rng.next_u64() % self.members.len() as u64) as usize;
        let member = self.members.swap_remove(pick);
        self.note_departure(&member);
        let (account, room, seat) = (member.account, member.room, member.seat);
        // A leave that hangs is cut short: dropping the participant kills
        // its task, which drops the WebSocket.
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, member.person.leave()).await;
        self.join_as(account, room, seat).await?;
        self.cycles += 1;
        Ok(())
    }

    /// Keeps what a leaving member received, so totals, latency, loss and
    /// the largest offer still count it.
    fn note_departure(&mut self, member: &Member) {
        let o = member.person.observe();
        self.departed.add(totals_of(&o));
        self.departed_latencies.extend(
            o.peer
                .received
                .values()
                .flat_map(|r| r.latencies_us.iter().copied()),
        );
        self.departed_losses.extend(loss_of(&o));
        self.departed_offers
            .push(OfferRecord::of(member, &o, false));
    }

    /// Participants present.
    pub fn present(&self) -> usize {
        self.members.len()
    }

    /// Drops everyone without a goodbye (the run is over).
    pub fn vanish(&mut self) {
        for m in self.members.drain(..) {
            m.person.vanish();
        }
    }

    /// Counters of everyone, present and departed.
    pub fn totals(&self) -> Totals {
        let mut t = self.departed;
        for m in &self.members {
            t.add(totals_of(&m.person.observe()));
        }
        t
    }

    /// Members of the initial population still waiting for their first
    /// packet, among those who should get one (before any churn: by join
    /// order).
    pub fn waiting_for_media(&self) -> usize {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                self.plan.receives_media(*i) && m.person.observe().peer.first_media_at.is_none()
            })
            .count()
    }

    /// Whether every storm joiner received media.
    pub fn joiners_have_media(&self) -> bool {
        self.members
            .iter()
            .filter(|m| m.seat >= self.plan.participants)
            .all(|m| m.person.observe().peer.first_media_at.is_some())
    }

    /// WebSocket open → first packet, µs, of everyone who got one.
    pub fn join_times_us(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter_map(|m| {
                let o = m.person.observe();
                let first = o.peer.first_media_at?;
                Some(first.saturating_duration_since(o.opened_at).as_micros() as u64)
            })
            .collect()
    }

    /// Forgets latency samples so far (everyone's, departed included).
    pub fn clear_latencies(&mut self) {
        self.departed_latencies.clear();
        for m in &self.members {
            for r in m.person.observe().peer.received.values_mut() {
                r.latencies_us.clear();
            }
        }
    }

    /// Every latency sample (µs) since the last clear.
    pub fn latencies_us(&self) -> Vec<u64> {
        let mut all = self.departed_latencies.clone();
        for m in &self.members {
            let o = m.person.observe();
            for r in o.peer.received.values() {
                all.extend_from_slice(&r.latencies_us);
            }
        }
        all
    }

    /// Every subscriber's loss, %.
    pub fn losses(&self) -> Vec<f64> {
        let mut all = self.departed_losses.clone();
        for m in &self.members {
            all.extend(loss_of(&m.person.observe()));
        }
        all
    }

    /// Where the latency vectors of the initial population's media stand now.
    pub fn latency_marks(&self) -> LatencyMarks {
        let mut marks = LatencyMarks::new();
        let initial = self.initial_ids();
        for m in self.members.iter().filter(|m| initial.contains(&m.id)) {
            for (&(from, source), r) in &m.person.observe().peer.received {
                if initial.contains(&from) {
                    marks.insert((m.id, from, source), r.latencies_us.len());
                }
            }
        }
        marks
    }

    /// The initial population's latency samples (µs) between `from` (or
    /// the start) and `to` (or now), initial senders only.
    pub fn latencies_between(
        &self,
        from: Option<&LatencyMarks>,
        to: Option<&LatencyMarks>,
    ) -> Vec<u64> {
        let initial = self.initial_ids();
        let mut all = Vec::new();
        for m in self.members.iter().filter(|m| initial.contains(&m.id)) {
            for (&(sender, source), r) in &m.person.observe().peer.received {
                if !initial.contains(&sender) {
                    continue;
                }
                let key = (m.id, sender, source);
                let start = from.and_then(|f| f.get(&key).copied()).unwrap_or(0);
                let end = to
                    .and_then(|t| t.get(&key).copied())
                    .unwrap_or(r.latencies_us.len());
                all.extend_from_slice(r.latencies_us.get(start..end).unwrap_or(&[]));
            }
        }
        all
    }

    fn initial_ids(&self) -> HashSet<ParticipantId> {
        self.members
            .iter()
            .filter(|m| m.seat < self.plan.participants)
            .map(|m| m.id)
            .collect()
    }

    /// Every member's largest subscribe offer, present and departed.
    fn offer_records(&self) -> Vec<OfferRecord> {
        let mut all = self.departed_offers.clone();
        all.extend(
            self.members
                .iter()
                .map(|m| OfferRecord::of(m, &m.person.observe(), true)),
        );
        all
    }

    /// The largest subscribe offer anyone received, against the plan's
    /// bound, and a line for each of the (at most [`FAILURES_LISTED`])
    /// participants whose offers went over it, worst first.
    pub fn largest_offer(&self) -> (SdpSize, Vec<String>) {
        let bound = self.plan.sdp_m_line_bound();
        let mut records = self.offer_records();
        records.sort_by_key(|r| std::cmp::Reverse(r.largest));
        let largest = records.first().map_or((0, 0), |r| r.largest);
        let over: Vec<&OfferRecord> = records.iter().filter(|r| r.largest.1 > bound).collect();
        let mut lines: Vec<String> = over
            .iter()
            .take(FAILURES_LISTED)
            .map(|r| r.describe(bound))
            .collect();
        if over.len() > lines.len() {
            lines.push(format!(
                "... and {} more participants had offers over the bound",
                over.len() - lines.len()
            ));
        }
        let size = SdpSize {
            bytes: largest.0,
            m_lines: largest.1,
            m_line_bound: bound,
        };
        (size, lines)
    }

    /// Everyone's counts now: the start of the delivery check.
    pub fn delivery_snapshot(&self) -> DeliverySnapshot {
        DeliverySnapshot {
            at: Instant::now(),
            counts: self
                .members
                .iter()
                .map(|m| {
                    let o = m.person.observe();
                    (m.id, (labelled(&o), arrived(&o)))
                })
                .collect(),
        }
    }

    /// Checks that since `snapshot` every member present then and now got
    /// new, correctly labelled payloads of every stream that every other
    /// such member of its room sends and it shows, at the layer its view
    /// asks for, and nothing of cameras it does not show. Capped
    /// subscribers' cameras are checked by [`Crowd::convergence`] instead.
    /// Returns the figures and a line per failing (subscriber, sender,
    /// source).
    pub fn check_delivery(&self, snapshot: &DeliverySnapshot) -> (Delivery, Vec<String>) {
        let window = snapshot.at.elapsed();
        let stayed: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| snapshot.counts.contains_key(&m.id))
            .collect();
        let mut delivery = Delivery {
            window_seconds: window.as_secs_f64(),
            ..Delivery::default()
        };
        let mut failures = Vec::new();
        for sub in &stayed {
            let (before, arrived_before) = &snapshot.counts[&sub.id];
            let mut o = sub.person.observe();
            let now = labelled(&o);
            let capped = self.plan.is_capped(sub.seat);
            for sender in stayed
                .iter()
                .filter(|p| p.room == sub.room && p.id != sub.id)
            {
                for source in sources(sender.sends) {
                    let camera = source == Source::Camera;
                    if camera && capped {
                        continue;
                    }
                    let key = (sender.id, source);
                    let (a, b) = (
                        before.get(&key).copied().unwrap_or(0),
                        now.get(&key).copied().unwrap_or(0),
                    );
                    let wanted = if camera {
                        self.plan.camera_layer(sub.seat, sender.seat)
                    } else {
                        Some(0)
                    };
                    let Some(layer) = wanted else {
                        // A tile it does not show: nothing may arrive.
                        delivery.hidden += 1;
                        if b > a {
                            delivery.hidden_receiving += 1;
                            if failures.len() < FAILURES_LISTED {
                                failures.push(format!(
                                    "subscriber {} got {} payloads of {}'s camera in the last {:.1} s, which it does not show",
                                    sub.id,
                                    b - a,
                                    sender.id,
                                    window.as_secs_f64()
                                ));
                            }
                        }
                        continue;
                    };
                    delivery.pairs += 1;
                    if b <= a {
                        delivery.failed += 1;
                        if failures.len() < FAILURES_LISTED {
                            let seen = Seen {
                                labelled: (a, b),
                                arrived_before,
                                window,
                            };
                            failures.push(explain(sub, sender.id, source, seen, &mut o));
                        }
                        continue;
                    }
                    let got = o.peer.received.get(&key).and_then(|r| r.layer);
                    if camera && self.plan.simulcast && got != Some(layer) {
                        delivery.wrong_layer += 1;
                        if failures.len() < FAILURES_LISTED {
                            failures.push(format!(
                                "subscriber {} receives {}'s camera at layer {got:?}, its view needs layer {layer}",
                                sub.id, sender.id
                            ));
                        }
                    }
                }
            }
        }
        let listed = failures.len();
        let failed = delivery.failed + delivery.hidden_receiving + delivery.wrong_layer;
        if failed > listed {
            failures.push(format!(
                "... and {} more pairs failed the check",
                failed - listed
            ));
        }
        (delivery, failures)
    }

    /// The capped subscribers' convergence: for each, how long after its
    /// first media the last camera packet above the lowest layer came (0
    /// if none ever did), and its microphone loss, %. `None` without
    /// capped subscribers.
    pub fn convergence(&self) -> Option<Convergence> {
        self.plan.capped?;
        let mut worst = Convergence::default();
        for m in self.members.iter().filter(|m| self.plan.is_capped(m.seat)) {
            let o = m.person.observe();
            let first = o.peer.first_media_at?;
            let (mut lost, mut expected) = (0, 0);
            for (&(_, source), r) in &o.peer.received {
                if source == Source::Microphone {
                    lost += r.missing();
                    expected += r.distinct + r.missing();
                    continue;
                }
                let above = r.last_of_layer[1..].iter().flatten().max();
                if let Some(last) = above {
                    let after = last.saturating_duration_since(first).as_secs_f64();
                    worst.seconds = worst.seconds.max(after);
                }
            }
            let loss = lost as f64 / expected.max(1) as f64 * 100.0;
            worst.audio_loss_percent = worst.audio_loss_percent.max(loss);
            worst.dropped_on_link += o.downlink_dropped;
        }
        Some(worst)
    }
}

/// How the capped subscribers fared (the worst of them).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Convergence {
    /// From its first media to the last camera packet above the lowest
    /// layer, seconds.
    pub seconds: f64,
    /// Microphone packets lost, %.
    pub audio_loss_percent: f64,
    /// Datagrams their bottlenecks dropped (all of them together).
    pub dropped_on_link: u64,
}

/// The largest subscribe offer one participant received.
#[derive(Debug, Clone)]
struct OfferRecord {
    id: ParticipantId,
    account: usize,
    /// Bytes, m-lines.
    largest: (usize, usize),
    /// Offers it answered.
    answered: u64,
    /// m-lines its latest offer labels with a track.
    labelled: usize,
    present: bool,
}

impl OfferRecord {
    fn of(member: &Member, o: &Observed, present: bool) -> Self {
        Self {
            id: member.id,
            account: member.account,
            largest: o.peer.largest_offer,
            answered: o.peer.offers_answered,
            labelled: o.peer.tracks.len(),
            present,
        }
    }

    /// One line for the report.
    fn describe(&self, bound: usize) -> String {
        format!(
            "participant {} (account {}, {}) received a subscribe offer of {} m-lines ({} bytes), \
             over the bound of {bound}; {} offers answered, its latest labels {} m-lines",
            self.id,
            self.account,
            if self.present {
                "present at the end"
            } else {
                "left"
            },
            self.largest.1,
            self.largest.0,
            self.answered,
            self.labelled,
        )
    }
}

/// Packets and bytes a participant counted from RTP headers.
fn totals_of(o: &Observed) -> Totals {
    let mut t = Totals::default();
    for ledger in o.peer.headers.values() {
        t.packets += ledger.packets;
        t.bytes += ledger.bytes;
    }
    t
}

/// A participant's loss over everything it received, % (`None` if nothing).
fn loss_of(o: &Observed) -> Option<f64> {
    let (lost, expected) = o
        .peer
        .headers
        .values()
        .fold((0, 0), |(l, e), h| (l + h.lost(), e + h.expected()));
    (expected > 0).then(|| lost as f64 / expected as f64 * 100.0)
}

/// RTP packets per incoming SSRC.
fn arrived(o: &Observed) -> Arrived {
    o.peer
        .headers
        .iter()
        .map(|(&ssrc, h)| (ssrc, h.packets))
        .collect()
}

/// Correctly labelled payloads per (sender, source).
fn labelled(o: &Observed) -> Labelled {
    o.peer
        .received
        .iter()
        .map(|(&key, r)| (key, r.packets.saturating_sub(r.mislabelled)))
        .collect()
}

/// The sources a participant sends packets on.
fn sources(sends: Sends) -> impl Iterator<Item = Source> {
    [
        (sends.audio, Source::Microphone),
        (sends.video, Source::Camera),
        (sends.screen, Source::Screen),
    ]
    .into_iter()
    .filter_map(|(on, source)| on.then_some(source))
}

/// What a subscriber had of one stream at the start of the check.
struct Seen<'a> {
    /// Labelled payloads at the start and now.
    labelled: (u64, u64),
    /// Its RTP counts per SSRC at the start.
    arrived_before: &'a Arrived,
    /// Since the start.
    window: Duration,
}

/// Why `sub` got nothing new of `sender`'s `source`: the m-lines its latest
/// offer labels with that track and the RTP that reached them (before the
/// check and now: "not forwarded" or "forwarded, not decrypted or not
/// ours"), every payload it got from that sender, and its offers and
/// errors.
fn explain(
    sub: &Member,
    sender: ParticipantId,
    source: Source,
    seen: Seen<'_>,
    o: &mut Observed,
) -> String {
    let mids: Vec<String> = o
        .peer
        .tracks
        .values()
        .filter(|t| t.participant == sender && t.source == source)
        .map(|t| t.mid.clone())
        .collect();
    let lines: Vec<String> = mids
        .iter()
        .map(|mid| {
            let ssrc = o
                .peer
                .subscribe
                .direct_api()
                .stream_rx_by_mid(mid.as_str().into(), None)
                .map(|s| *s.ssrc());
            let Some(ssrc) = ssrc else {
                return format!("{mid}: no receive stream");
            };
            let before = seen.arrived_before.get(&ssrc).copied().unwrap_or(0);
            let ledger = o.peer.headers.get(&ssrc).copied().unwrap_or_default();
            // Which line str0m files that SSRC's packets under, and whether
            // it ever accepted one (decrypted and registered).
            let rx = o.peer.subscribe.direct_api().stream_rx(&ssrc.into()).map(|s| (s.mid().to_string(), s.last_time().is_some()));
            // A stream that starts just below the 16-bit wrap puts its
            // sender's SRTP rollover counter at 1 before a receiver that
            // missed the first packets (or skips them, sampling) has
            // seen it wrap: it then assumes 0 and can decrypt nothing.
            let wrap = if ledger.packets > 0 && ledger.first & 0xffff >= 0x10000 - WRAP_HINT {
                ", started just below the 16-bit sequence wrap (SRTP rollover?)"
            } else {
                ""
            };
            format!(
                "{mid}: SSRC {ssrc}, RTP {before} -> {} (extended seq {}..{}{wrap}), str0m files it under {rx:?} (line, any accepted)",
                ledger.packets, ledger.first, ledger.highest
            )
        })
        .collect();
    let from_sender: Vec<String> = o
        .peer
        .received
        .iter()
        .filter(|((from, _), _)| *from == sender)
        .map(|((_, src), r)| {
            format!(
                "{}: {} payloads, {} mislabelled",
                src.as_str(),
                r.packets,
                r.mislabelled
            )
        })
        .collect();
    let errors = o
        .peer
        .errors
        .iter()
        .rev()
        .take(3)
        .cloned()
        .collect::<Vec<_>>();
    let (before, after) = seen.labelled;
    format!(
        "subscriber {} (room {}, account {}) got no new {} payload from {} in the last {:.1} s \
         (labelled samples {before} -> {after}); its latest offer labels {lines:?} with that \
         track ({} m-lines labelled in all); from that sender it decrypted {from_sender:?}; \
         {} offers answered, largest {} B / {} m-lines; last errors {errors:?}",
        sub.id,
        sub.room,
        sub.account,
        source.as_str(),
        sender,
        seen.window.as_secs_f64(),
        o.peer.tracks.len(),
        o.peer.offers_answered,
        o.peer.largest_offer.0,
        o.peer.largest_offer.1,
    )
}
