//! VP8 picture numbering across simulcast layers.
//!
//! Each layer of a VP8 simulcast track numbers its frames on its own: the
//! payload descriptor's picture id (7 or 15 bits) and TL0PICIDX (the index
//! of the last base-temporal-layer frame, 8 bits). A browser's decoder uses
//! them to order frames and find their references, and drops frames whose
//! numbers jump backwards, so a subscriber moved from one layer to another
//! would see its video freeze after the keyframe. The [`Vp8Munger`] of a
//! subscription shifts both numbers so that the new layer's keyframe
//! follows the last frame sent, as other SFUs do (mediasoup, LiveKit).
//! While the shift is zero (no switch yet) payloads are forwarded as they
//! are, shared by every subscriber.

use std::sync::Arc;

/// Where the numbers sit in one packet's payload descriptor (RFC 7741).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Numbers {
    /// The picture id, its offset in the payload, and whether it is the
    /// 15-bit form.
    picture_id: Option<(u16, usize, bool)>,
    /// TL0PICIDX and its offset.
    tl0: Option<(u8, usize)>,
}

impl Vp8Numbers {
    /// Reads a payload descriptor; `None` without the extension byte (no
    /// numbers to keep continuous) or when the payload is too short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let first = *payload.first()?;
        if first & 0x80 == 0 {
            return None;
        }
        let x = *payload.get(1)?;
        let mut at = 2;
        let mut picture_id = None;
        if x & 0x80 != 0 {
            let high = *payload.get(at)?;
            if high & 0x80 != 0 {
                let low = *payload.get(at + 1)?;
                picture_id = Some((u16::from_be_bytes([high & 0x7f, low]), at, true));
                at += 2;
            } else {
                picture_id = Some((u16::from(high), at, false));
                at += 1;
            }
        }
        let tl0 = if x & 0x40 != 0 {
            Some((*payload.get(at)?, at))
        } else {
            None
        };
        Some(Self { picture_id, tl0 })
    }
}

/// One subscription's shift of VP8 numbers, and the last numbers it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Munger {
    picture_shift: u16,
    tl0_shift: u8,
    last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
}

impl Vp8Munger {
    /// Starts a new layer at its keyframe `numbers`: they continue from
    /// the last ones sent.
    pub fn switch(&mut self, numbers: Option<Vp8Numbers>) {
        let Some(numbers) = numbers else { return };
        if let (Some((id, _, long)), Some(last)) = (numbers.picture_id, self.last_picture_id) {
            self.picture_shift = last.wrapping_add(1).wrapping_sub(id) & mask(long);
        }
        if let (Some((tl0, _)), Some(last)) = (numbers.tl0, self.last_tl0) {
            self.tl0_shift = last.wrapping_add(1).wrapping_sub(tl0);
        }
    }

    /// The payload to send for a packet with `numbers`, shifted when a
    /// switch made it necessary (then copied; otherwise shared), and
    /// remembered as the last sent.
    pub fn forward(&mut self, payload: &Arc<[u8]>, numbers: Option<Vp8Numbers>) -> Arc<[u8]> {
        let Some(numbers) = numbers else {
            return payload.clone();
        };
        let out = self.apply(payload, numbers);
        if let Some((id, _, long)) = numbers.picture_id {
            self.last_picture_id = Some(id.wrapping_add(self.picture_shift) & mask(long));
        }
        if let Some((tl0, _)) = numbers.tl0 {
            self.last_tl0 = Some(tl0.wrapping_add(self.tl0_shift));
        }
        out
    }

    /// `payload` with the current shift applied (for a resend), without
    /// remembering it.
    pub fn apply(&self, payload: &Arc<[u8]>, numbers: Vp8Numbers) -> Arc<[u8]> {
        if self.picture_shift == 0 && self.tl0_shift == 0 {
            return payload.clone();
        }
        let mut bytes = payload.to_vec();
        if let Some((id, at, long)) = numbers.picture_id {
            let shifted = id.wrapping_add(self.picture_shift) & mask(long);
            if long {
                let [high, low] = shifted.to_be_bytes();
                bytes[at] = 0x80 | high;
                bytes[at + 1] = low;
            } else {
                bytes[at] = shifted as u8;
            }
        }
        if let Some((tl0, at)) = numbers.tl0 {
            bytes[at] = tl0.wrapping_add(self.tl0_shift);
        }
        Arc::from(bytes)
    }
}

/// The bits a picture id has: 15 in the long form, 7 in the short.
fn mask(long: bool) -> u16 {
    if long { 0x7fff } else { 0x7f }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor with a 15-bit picture id and TL0PICIDX, then payload.
    fn packet(picture_id: u16, tl0: u8) -> Arc<[u8]> {
        let [high, low] = picture_id.to_be_bytes();
        Arc::from(vec![0x90, 0xc0, 0x80 | high, low, tl0, 0x20, 1, 2, 3])
    }

    fn numbers_of(p: &[u8]) -> (u16, u8) {
        let n = Vp8Numbers::parse(p).expect("a descriptor");
        (n.picture_id.expect("picture id").0, n.tl0.expect("tl0").0)
    }

    #[test]
    fn reads_long_and_short_picture_ids() {
        assert_eq!(numbers_of(&packet(30_000, 7)), (30_000, 7));
        let short = [0x90, 0x80, 0x35, 0x10];
        let n = Vp8Numbers::parse(&short).expect("short form");
        assert_eq!(n.picture_id, Some((0x35, 2, false)));
        assert_eq!(n.tl0, None);
        assert_eq!(Vp8Numbers::parse(&[0x10, 0x50]), None, "no extension");
        assert_eq!(Vp8Numbers::parse(&[0x90, 0x80]), None, "truncated");
    }

    #[test]
    fn before_any_switch_payloads_are_shared() {
        let mut m = Vp8Munger::default();
        let p = packet(100, 5);
        let out = m.forward(&p, Vp8Numbers::parse(&p));
        assert!(Arc::ptr_eq(&p, &out));
    }

    #[test]
    fn a_switch_continues_the_numbers_of_the_layer_left() {
        let mut m = Vp8Munger::default();
        for (id, tl0) in [(500, 40), (501, 40), (502, 41)] {
            let p = packet(id, tl0);
            m.forward(&p, Vp8Numbers::parse(&p));
        }
        // The new layer's keyframe numbers its pictures far away, lower.
        let key = packet(20, 200);
        m.switch(Vp8Numbers::parse(&key));
        let out = m.forward(&key, Vp8Numbers::parse(&key));
        assert_eq!(numbers_of(&out), (503, 42));
        assert_eq!(&out[5..], &key[5..], "the rest is unchanged");
        let next = packet(21, 200);
        assert_eq!(
            numbers_of(&m.forward(&next, Vp8Numbers::parse(&next))),
            (504, 42)
        );
        // Wrapping at 15 bits.
        let late = packet(0x7fff - 482, 201);
        assert_eq!(
            numbers_of(&m.forward(&late, Vp8Numbers::parse(&late))),
            (0, 43)
        );
        // A resend of the keyframe gets the same numbers it was sent with.
        let again = m.apply(&key, Vp8Numbers::parse(&key).expect("parsed"));
        assert_eq!(numbers_of(&again), (503, 42));
    }
}
