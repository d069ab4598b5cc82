//! Just enough STUN parsing to route a new flow: the USERNAME attribute of
//! a binding request names our ICE ufrag, which identifies the connection
//! before its address is known.

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// Whether `packet` looks like STUN (RFC 8489 header, RFC 7983 demux).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN && packet[0] < 4 && packet[4..8] == MAGIC_COOKIE
}

/// The local ufrag from a STUN message's USERNAME (`local:remote`), if any.
/// Never panics, whatever the bytes.
pub fn local_ufrag(packet: &[u8]) -> Option<&str> {
    if !is_stun(packet) {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let body = packet.get(HEADER_LEN..HEADER_LEN.checked_add(declared)?)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = (len + 3) & !3;
        rest = rest.get(4 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // A PRIORITY attribute after it, to check we skip correctly too.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let mut packet = vec![0x00, 0x01];
        packet.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        packet.extend_from_slice(&MAGIC_COOKIE);
        packet.extend_from_slice(&[7; 12]);
        packet.extend_from_slice(&attrs);
        packet
    }

    #[test]
    fn finds_the_local_ufrag() {
        assert_eq!(local_ufrag(&binding_request("srvA:cli9")), Some("srvA"));
        assert_eq!(local_ufrag(&binding_request("abc:de")), Some("abc"));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert_eq!(local_ufrag(b""), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None, "RTP is not STUN");
        let mut truncated = binding_request("srvA:cli9");
        truncated.truncate(26);
        assert_eq!(local_ufrag(&truncated), None);
        let mut lying = binding_request("srvA:cli9");
        lying[3] = 0xff;
        assert_eq!(local_ufrag(&lying), None);
        let mut rng = 0x1234_5678u32;
        for _ in 0..10_000 {
            let len = (rng % 64) as usize;
            let mut packet = binding_request("x:y");
            packet.truncate(len.min(packet.len()));
            for b in packet.iter_mut().skip(20) {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                *b = rng as u8;
            }
            let _ = local_ufrag(&packet);
        }
    }
}
