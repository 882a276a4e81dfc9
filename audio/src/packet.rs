//! What an Opus packet carries, read from its bytes (RFC 6716 §3, the packet framing):
//! whether it holds in-band FEC (SILK LBRR) for the frame before it, and how many
//! padding bytes it has (where libopus 1.5+ puts DRED, as a padding extension). Used to
//! count what the decoder really rebuilt a lost frame from; never panics on any input.
//!
//! Why our own reading and not libopus' `opus_packet_has_lbrr` (reachable as
//! `opusic_c::sys`): calling it needs `unsafe`, which the workspace forbids
//! (`unsafe_code = "forbid"`), and `opusic-c` has no safe wrapper for it. The LBRR
//! rule below is the same one libopus applies (the first SILK frame's LBRR flags).

/// The layout of one Opus packet, as far as loss recovery cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// The first frame carries LBRR data (in-band FEC for the previous frame), as
    /// libopus' `opus_packet_has_lbrr` reads it.
    pub lbrr: bool,
    /// Padding bytes (code-3 packets only); DRED, when present, lives here.
    pub padding: usize,
}

/// Reads `packet`'s framing; `None` if it is not a well-formed Opus packet.
pub fn inspect(packet: &[u8]) -> Option<PacketInfo> {
    let (&toc, rest) = packet.split_first()?;
    let config = toc >> 3;
    let stereo = toc & 0x04 != 0;
    let (first, padding) = match toc & 0x03 {
        0 | 1 => (rest, 0),
        2 => {
            let (len, used) = frame_length(rest)?;
            (rest.get(used..used + len)?, 0)
        }
        _ => {
            let (&count, mut at) = rest.split_first()?;
            let (vbr, padded, frames) = (count & 0x80 != 0, count & 0x40 != 0, count & 0x3f);
            if frames == 0 {
                return None;
            }
            let mut padding = 0usize;
            if padded {
                loop {
                    let (&b, tail) = at.split_first()?;
                    at = tail;
                    padding += if b == 255 { 254 } else { usize::from(b) };
                    if b != 255 {
                        break;
                    }
                }
            }
            let data_len = at.len().checked_sub(padding)?;
            let first_len = if vbr && frames > 1 {
                let (len, used) = frame_length(at)?;
                // The other lengths follow the first; the first frame starts after all.
                let mut skip = used;
                for _ in 2..frames {
                    let (_, u) = frame_length(at.get(skip..)?)?;
                    skip += u;
                }
                at = at.get(skip..)?;
                len
            } else {
                data_len / usize::from(frames)
            };
            (at.get(..first_len)?, padding)
        }
    };
    // SILK-only (configs 0–11) and hybrid (12–15) frames start with the VAD and LBRR
    // flags of each 20 ms SILK frame; CELT-only packets carry no LBRR.
    let silk_frames = match config {
        0..=11 => match config % 4 {
            3 => 3, // 60 ms
            2 => 2, // 40 ms
            _ => 1, // 10 or 20 ms
        },
        12..=15 => 1,
        _ => 0,
    };
    let lbrr = match (silk_frames, first.first()) {
        (0, _) | (_, None) => false,
        (n, Some(&b)) => {
            let mid = (b >> (7 - n)) & 1 != 0;
            let side = stereo && (b >> (6 - 2 * n)) & 1 != 0;
            mid || side
        }
    };
    Some(PacketInfo { lbrr, padding })
}

/// A frame length as code-2/3 packets write it: one byte below 252, else two.
fn frame_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let &b0 = bytes.first()?;
    if b0 < 252 {
        return Some((usize::from(b0), 1));
    }
    let &b1 = bytes.get(1)?;
    Some((usize::from(b1) * 4 + usize::from(b0), 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Encoder, FRAME_SAMPLES};

    fn speechy(frame: usize) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                0.3 * (t * 2.0 * std::f32::consts::PI * 180.0).sin()
                    + 0.1 * (t * 2.0 * std::f32::consts::PI * 1_300.0).sin()
            })
            .collect()
    }

    #[test]
    fn lbrr_follows_expected_loss_and_dred_pads() {
        let mut enc = Encoder::new(32_000).unwrap();
        let plain: Vec<_> = (0..20).map(|i| enc.encode(&speechy(i)).unwrap()).collect();
        assert!(plain
            .iter()
            .all(|p| inspect(p) == Some(PacketInfo::default())));
        enc.set_expected_loss(20).unwrap();
        let fec: Vec<_> = (20..40).map(|i| enc.encode(&speechy(i)).unwrap()).collect();
        // LBRR rides on voiced frames the encoder can afford it for: most, not all.
        let with = fec.iter().filter(|p| inspect(p).is_some_and(|i| i.lbrr));
        assert!(with.count() >= 5, "{fec:?}");
        enc.set_dred(30).unwrap();
        let dred: Vec<_> = (40..80).map(|i| enc.encode(&speechy(i)).unwrap()).collect();
        assert!(dred[10..]
            .iter()
            .all(|p| inspect(p).is_some_and(|i| i.padding > 0)));
    }

    #[test]
    fn garbage_is_refused_or_read_without_panicking() {
        assert_eq!(inspect(&[]), None);
        assert_eq!(inspect(&[0x03]), None);
        assert_eq!(inspect(&[0x03, 0x41, 0xff]), None);
        for len in 0..64usize {
            for seed in 0..=255u8 {
                let bytes: Vec<u8> = (0..len).map(|i| seed.wrapping_mul(i as u8 + 7)).collect();
                let _ = inspect(&bytes);
            }
        }
    }
}
