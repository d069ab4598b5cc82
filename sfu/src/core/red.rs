//! Payload types from a publisher to one subscriber, and RFC 2198 RED audio
//! for subscribers that did not negotiate it.
//!
//! Chromium sends its microphone as RED when the answer lists RED before
//! Opus (str0m's answers do): each packet also carries the previous
//! packet's audio, so a single loss on either hop is repaired at the
//! receiver without a retransmission. A subscriber whose browser negotiated
//! RED receives the packets as they are; one that did not receives each
//! packet's primary (newest) block as plain Opus.

use str0m::media::Pt;

/// How a publisher's payload types map to one subscriber's (the two
/// connections number codecs independently).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadTypes {
    /// Publisher payload type → subscriber payload type, same codec.
    map: Vec<(Pt, Pt)>,
    /// The publisher's RED payload type, when the subscriber has no RED:
    /// such packets go out as their primary block, with the subscriber's
    /// payload type for the primary codec.
    unwrap_red: Option<(Pt, Pt)>,
}

/// What one packet becomes for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Sent as it is, with this payload type.
    As(Pt),
    /// RED, sent as its primary block with this payload type.
    Primary(Pt),
}

impl PayloadTypes {
    /// Same-codec pairs, and no RED to unwrap.
    pub fn new(map: Vec<(Pt, Pt)>) -> Self {
        Self {
            map,
            unwrap_red: None,
        }
    }

    /// Also sends the publisher's RED packets (`red`) as their primary
    /// block with the subscriber's payload type `primary`.
    pub fn unwrapping_red(mut self, red: Pt, primary: Pt) -> Self {
        self.unwrap_red = Some((red, primary));
        self
    }

    /// What a packet of the publisher's payload type `pt` becomes (`None`:
    /// the subscriber did not negotiate its codec).
    pub fn map(&self, pt: Pt) -> Option<Mapped> {
        if let Some(&(_, to)) = self.map.iter().find(|(from, _)| *from == pt) {
            return Some(Mapped::As(to));
        }
        match self.unwrap_red {
            Some((red, primary)) if red == pt => Some(Mapped::Primary(primary)),
            _ => None,
        }
    }
}

/// The primary (last) block of a RED payload: after the 4-byte headers of
/// the redundant blocks (F bit set, a 10-bit length each) and the final
/// 1-byte header, past the redundant blocks' data. `None` when the payload
/// is malformed or its primary block is empty.
pub fn primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant = 0;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        let header = payload.get(at..at + 4)?;
        redundant += (usize::from(header[2] & 0x03) << 8) | usize::from(header[3]);
        at += 4;
    }
    payload.get(at + redundant..).filter(|p| !p.is_empty())
}

/// A RED payload of `redundant` blocks (oldest first, each `spacing`
/// timestamp ticks before the next) and `primary`, all of payload type
/// `pt`, as Chromium sends its microphone (for the simulated browsers).
#[cfg(any(test, feature = "testkit"))]
pub fn wrap(pt: Pt, redundant: &[&[u8]], primary: &[u8], spacing: u16) -> Vec<u8> {
    let pt = *pt & 0x7f;
    let mut out = Vec::with_capacity(1 + 4 * redundant.len() + primary.len());
    for (i, block) in redundant.iter().enumerate() {
        // 14 bits of timestamp offset, 10 bits of length.
        let offset = (spacing * (redundant.len() - i) as u16) & 0x3fff;
        let len = (block.len() as u16).min(0x3ff);
        out.push(0x80 | pt);
        out.push((offset >> 6) as u8);
        out.push(((offset << 2) as u8) | (len >> 8) as u8);
        out.push(len as u8);
    }
    out.push(pt);
    for block in redundant {
        out.extend_from_slice(&block[..block.len().min(0x3ff)]);
    }
    out.extend_from_slice(primary);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(redundant: &[&[u8]], primary: &[u8]) -> Vec<u8> {
        wrap(111.into(), redundant, primary, 960)
    }

    #[test]
    fn the_primary_block_is_what_follows_the_redundant_ones() {
        let previous = vec![7u8; 300];
        let payload = red(&[&previous], b"newest audio");
        assert_eq!(primary(&payload), Some(&b"newest audio"[..]));
        // Two levels, and a block longer than 255 bytes.
        let payload = red(&[&[1u8; 2], &previous], b"now");
        assert_eq!(primary(&payload), Some(&b"now"[..]));
        // No redundancy yet (the first packet of a stream).
        assert_eq!(primary(&red(&[], b"first")), Some(&b"first"[..]));
    }

    #[test]
    fn malformed_red_gives_nothing() {
        assert_eq!(primary(&[]), None);
        // A redundant header cut short.
        assert_eq!(primary(&[0x80 | 111, 0, 0]), None);
        // Lengths past the end.
        assert_eq!(primary(&red(&[&[1u8; 10]], b"")[..8]), None);
        // An empty primary block.
        assert_eq!(primary(&red(&[&[1u8; 10]], b"")), None);
        // Only headers with the F bit.
        assert_eq!(primary(&[0xff; 64]), None);
    }

    #[test]
    fn red_is_unwrapped_only_for_subscribers_without_it() {
        let with_red = PayloadTypes::new(vec![(111.into(), 109.into()), (63.into(), 100.into())]);
        assert_eq!(with_red.map(63.into()), Some(Mapped::As(100.into())));
        let without =
            PayloadTypes::new(vec![(111.into(), 109.into())]).unwrapping_red(63.into(), 109.into());
        assert_eq!(without.map(63.into()), Some(Mapped::Primary(109.into())));
        assert_eq!(without.map(111.into()), Some(Mapped::As(109.into())));
        assert_eq!(without.map(96.into()), None);
    }
}
