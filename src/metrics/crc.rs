//! CRC-32 (the gzip trailer's) of pieces of text, joined end to end in one multiplication.
//!
//! The CRC of `a` followed by `b` is the CRC of `a` times x^(8·len(b)), plus the CRC of `b`,
//! in GF(2) modulo the CRC polynomial. `crc32fast::Hasher::combine` computes x^(8·len(b))
//! again on every call, one multiplication per bit set in the length: a gzip body joins a
//! few hundred pieces after every change. Here each piece keeps its power of x, computed
//! once, so joining costs one multiplication a piece.

/// The CRC-32 polynomial, bit-reversed (the reflected form gzip uses).
const POLY: u32 = 0xedb8_8320;
/// x^0, the product's identity, in the reflected bit order.
const ONE: u32 = 1 << 31;

/// `X2N[k]` is x^(2^k) modulo the polynomial.
const X2N: [u32; 32] = {
    let mut table = [0u32; 32];
    // x^1.
    let mut p = 1 << 30;
    let mut k = 0;
    while k < 32 {
        table[k] = p;
        p = multiply(p, p);
        k += 1;
    }
    table
};

/// The product of `a` and `b` modulo the polynomial.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut m = ONE;
    while m != 0 {
        if a & m != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        m >>= 1;
    }
    product
}

/// x^(8·len) modulo the polynomial: what a CRC is multiplied by when `len` bytes follow it.
fn byte_shift(len: u64) -> u32 {
    let mut p = ONE;
    let mut bits = len;
    // Bit i of the length stands for x^(8·2^i) = x^(2^(i+3)); the powers repeat with
    // period 32 in the exponent of 2, since x's order divides 2^32 - 1.
    let mut k = 3;
    while bits != 0 {
        if bits & 1 != 0 {
            p = multiply(X2N[k & 31], p);
        }
        bits >>= 1;
        k += 1;
    }
    p
}

/// The CRC-32 of some bytes, their length, and what appending them shifts a CRC by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc {
    value: u32,
    len: u64,
    shift: u32,
}

impl Crc {
    pub fn of(bytes: &[u8]) -> Crc {
        let len = bytes.len() as u64;
        Crc {
            value: crc32fast::hash(bytes),
            len,
            shift: byte_shift(len),
        }
    }

    /// The CRC of the pieces' bytes one after another.
    pub fn join<'a>(pieces: impl IntoIterator<Item = &'a Crc>) -> Crc {
        let (mut value, mut len) = (0, 0);
        for p in pieces {
            value = multiply(p.shift, value) ^ p.value;
            len += p.len;
        }
        Crc {
            value,
            len,
            shift: byte_shift(len),
        }
    }

    pub fn value(&self) -> u32 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(Crc::of(b"").value(), 0);
        // The check value of CRC-32 (ISO-HDLC), as in gzip.
        assert_eq!(Crc::of(b"123456789").value(), 0xcbf4_3926);
        assert_eq!(multiply(ONE, 0x1234_5678), 0x1234_5678);
        assert_eq!(byte_shift(0), ONE);
    }

    #[test]
    fn appending_matches_the_crc_of_the_whole() {
        let text: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 3, 4096, 65_536, 69_999, 70_000] {
            let crc = Crc::join(&[Crc::of(&text[..cut]), Crc::of(&text[cut..])]);
            assert_eq!(crc, Crc::of(&text), "cut at {cut}");
        }
        assert_eq!(Crc::join(&[]), Crc::of(b""));
        assert_eq!(Crc::join(&[Crc::of(b""), Crc::of(b"")]), Crc::of(b""));
    }

    proptest! {
        #[test]
        fn pieces_appended_give_the_crc_of_their_concatenation(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            split in 0usize..12,
        ) {
            let whole: Vec<u8> = pieces.concat();
            let crcs: Vec<Crc> = pieces.iter().map(|p| Crc::of(p)).collect();
            // Joined all at once, and as two halves joined to each other.
            prop_assert_eq!(Crc::join(&crcs), Crc::of(&whole));
            let split = split.min(crcs.len());
            let halves = [Crc::join(&crcs[..split]), Crc::join(&crcs[split..])];
            prop_assert_eq!(Crc::join(&halves).value(), crc32fast::hash(&whole));
        }
    }
}
