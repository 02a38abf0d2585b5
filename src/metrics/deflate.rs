//! Raw deflate (RFC 1951) of the body's pieces, each on its own, ending in a sync flush so
//! that the pieces can be spliced into one gzip member.
//!
//! A gzip scrape at a realistic poll rate deflates again a few hundred pieces of some 3 KB
//! (the lines of 16 targets in one family). zlib-rs clears a 128 KB match table before
//! each stream: for a 3 KB piece that took as long as deflating it. This is the method of
//! zlib's fastest level (one hash probe per position, the longest match at it taken
//! greedily, fixed Huffman codes), with a match table sized to the piece: 16 KB to clear
//! for a 3 KB piece.

/// Shortest match looked for: the bytes hashed (deflate allows 3).
const MIN_MATCH: usize = 4;
/// Longest match deflate can express.
const MAX_MATCH: usize = 258;
/// Farthest back a match may start.
const MAX_DISTANCE: usize = 32 * 1024;
/// Bits of the match table's index: at least this many...
const MIN_TABLE_BITS: u32 = 8;
/// ...and at most this many (64 KB to clear, for pieces of 16 KB and more).
const MAX_TABLE_BITS: u32 = 14;

/// Length codes 257..=285: the shortest length of each and its extra bits.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Distance codes 0..=29: the shortest distance of each and its extra bits.
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The fixed Huffman code of each literal/length symbol (RFC 1951, 3.2.6), bit-reversed as
/// the stream sends codes first bit first, and its length.
const FIXED_CODES: [(u16, u8); 288] = fixed_codes();

const fn fixed_codes() -> [(u16, u8); 288] {
    let mut codes = [(0u16, 0u8); 288];
    let mut symbol = 0;
    while symbol < 288 {
        let (code, len) = match symbol {
            0..=143 => (0x30 + symbol as u16, 8),
            144..=255 => (0x190 + (symbol - 144) as u16, 9),
            256..=279 => ((symbol - 256) as u16, 7),
            _ => (0xc0 + (symbol - 280) as u16, 8),
        };
        codes[symbol] = (code.reverse_bits() >> (16 - len), len);
        symbol += 1;
    }
    codes
}

/// Bits gathered first bit first into bytes.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    len: u32,
}

impl Bits<'_> {
    /// Appends the `len` low bits of `bits` (at most 32).
    fn put(&mut self, bits: u32, len: u32) {
        self.acc |= u64::from(bits) << self.len;
        self.len += len;
        if self.len >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.len -= 32;
        }
    }

    fn symbol(&mut self, symbol: usize) {
        let (code, len) = FIXED_CODES[symbol];
        self.put(u32::from(code), u32::from(len));
    }

    /// A match of `len` bytes (3..=258) `distance` (1..=32768) back.
    fn back_reference(&mut self, len: usize, distance: usize) {
        let code = LENGTH_BASE.partition_point(|&base| usize::from(base) <= len) - 1;
        self.symbol(257 + code);
        self.put(
            (len - usize::from(LENGTH_BASE[code])) as u32,
            u32::from(LENGTH_EXTRA[code]),
        );
        let code = DISTANCE_BASE.partition_point(|&base| usize::from(base) <= distance) - 1;
        // Distance codes are five bits long, all of them.
        self.put(u32::from((code as u8).reverse_bits() >> 3), 5);
        self.put(
            (distance - usize::from(DISTANCE_BASE[code])) as u32,
            u32::from(DISTANCE_EXTRA[code]),
        );
    }

    /// Pads to a byte boundary with zero bits and writes out what is left.
    fn align(&mut self) {
        let bytes = self.len.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.acc = 0;
        self.len = 0;
    }
}

/// A deflater and its match table, kept from one piece to the next.
#[derive(Default)]
pub struct Deflater {
    /// Per hash of four bytes, one more than the last position they were seen at; 0 for
    /// none.
    table: Vec<u32>,
}

impl Deflater {
    pub fn new() -> Deflater {
        Deflater::default()
    }

    /// Appends to `out` the raw deflate of `plain`: one fixed-Huffman block, not final,
    /// then an empty stored block, so that it ends on a byte boundary and the next
    /// piece's stream can follow it (what zlib's `Z_SYNC_FLUSH` writes). Matches reach no
    /// farther back than `plain`'s start.
    pub fn deflate(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let bits =
            (usize::BITS - plain.len().leading_zeros()).clamp(MIN_TABLE_BITS, MAX_TABLE_BITS);
        self.table.clear();
        self.table.resize(1 << bits, 0);
        let table = &mut self.table[..];
        let mut w = Bits {
            out,
            acc: 0,
            len: 0,
        };
        // BFINAL 0, BTYPE 01: fixed Huffman codes.
        w.put(0b010, 3);
        let mut i = 0;
        while i + MIN_MATCH <= plain.len() {
            let word = u32::from_le_bytes([plain[i], plain[i + 1], plain[i + 2], plain[i + 3]]);
            let slot = (word.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize;
            let seen = table[slot] as usize;
            table[slot] = (i + 1) as u32;
            if seen > 0 && i + 1 - seen <= MAX_DISTANCE {
                let from = seen - 1;
                let longest = (plain.len() - i).min(MAX_MATCH);
                let len = plain[from..from + longest]
                    .iter()
                    .zip(&plain[i..i + longest])
                    .take_while(|(a, b)| a == b)
                    .count();
                if len >= MIN_MATCH {
                    w.back_reference(len, i - from);
                    i += len;
                    continue;
                }
            }
            w.symbol(usize::from(plain[i]));
            i += 1;
        }
        for &byte in &plain[i..] {
            w.symbol(usize::from(byte));
        }
        // End of block; then BFINAL 0, BTYPE 00, aligned, LEN 0 and NLEN 0xffff.
        w.symbol(256);
        w.put(0, 3);
        w.align();
        w.out.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The pieces' streams spliced as the gzip body splices them, ended by a final empty
    /// block, and inflated.
    fn inflate(pieces: &[&[u8]]) -> Vec<u8> {
        let mut d = Deflater::new();
        let mut stream = Vec::new();
        for p in pieces {
            let before = stream.len();
            d.deflate(p, &mut stream);
            assert_eq!(&stream[stream.len() - 4..], &[0, 0, 0xff, 0xff]);
            assert!(stream.len() > before);
        }
        stream.extend_from_slice(&[0x03, 0x00]);
        zlib_inflate(&stream)
    }

    /// A raw deflate stream inflated by zlib's inflater.
    fn zlib_inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .expect("a valid deflate stream");
        out
    }

    #[test]
    fn round_trips_text_binary_and_edge_sizes() {
        let line = b"hss_registry_access_success{account=\"a\",enterprise_project_id=\"0\",project_id=\"0123456789abcdef0123456789abcdef\",region=\"cn-north-4\",registry_type=\"Harbor\"} 12\n";
        let text: Vec<u8> = line.iter().copied().cycle().take(40_000).collect();
        let binary: Vec<u8> = (0u32..70_000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let runs = vec![b'x'; 100_000];
        for piece in [
            &b""[..],
            b"a",
            b"abc",
            b"abcd",
            b"abcdabcdabcd",
            &text,
            &binary,
            &runs,
            &text[..=(MAX_MATCH + MIN_MATCH)],
        ] {
            assert_eq!(inflate(&[piece]), piece, "{} bytes", piece.len());
        }
        let all = [
            &text[..5000],
            &binary[..3000],
            b"",
            &runs[..700],
            &text[7..],
        ];
        assert_eq!(inflate(&all), all.concat());
    }

    proptest::proptest! {
        #[test]
        fn any_pieces_round_trip(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
                    // A small alphabet: matches of every length and distance.
                    proptest::collection::vec(0u8..3, 0..20_000),
                ],
                1..4,
            )
        ) {
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(inflate(&refs), pieces.concat());
        }
    }

    #[test]
    fn every_length_and_distance_decodes() {
        // Literals first, then back-references of every length and of the first and last
        // distance of every code, written by hand and checked against zlib's inflater.
        let prefix: Vec<u8> = (0u32..33_000)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect();
        let mut expected = prefix.clone();
        let mut stream = Vec::new();
        let mut w = Bits {
            out: &mut stream,
            acc: 0,
            len: 0,
        };
        w.put(0b010, 3);
        for &b in &prefix {
            w.symbol(usize::from(b));
        }
        let mut distances: Vec<usize> = DISTANCE_BASE.iter().map(|&d| usize::from(d)).collect();
        distances.extend(DISTANCE_BASE[1..].iter().map(|&d| usize::from(d) - 1));
        distances.push(MAX_DISTANCE);
        for (k, &distance) in distances.iter().enumerate() {
            for len in (3..=MAX_MATCH).filter(|l| l % 29 == k % 29 || *l < 12 || *l > 254) {
                w.back_reference(len, distance);
                let from = expected.len() - distance;
                for j in 0..len {
                    expected.push(expected[from + j]);
                }
            }
        }
        w.symbol(256);
        w.put(0, 3);
        w.align();
        stream.extend_from_slice(&[0, 0, 0xff, 0xff, 0x03, 0x00]);
        let out = zlib_inflate(&stream);
        assert_eq!(out.len(), expected.len());
        assert!(out == expected);
    }

    #[test]
    fn compresses_exposition_text_like_zlib_at_level_1() {
        let mut text = Vec::new();
        for i in 0..16 {
            text.extend_from_slice(format!("hss_registry_statistics_last_success_timestamp_seconds{{account=\"acct-{}\",enterprise_project_id=\"\",project_id=\"{:032x}\",region=\"cn-north-4\",registry_type=\"\"}} 1.764590{:03}e9\n", i % 3, i * 7919, i).as_bytes());
        }
        let mut ours = Vec::new();
        Deflater::new().deflate(&text, &mut ours);
        let mut zlib = flate2::Compress::new(flate2::Compression::new(1), false);
        let mut theirs = Vec::with_capacity(text.len());
        zlib.compress_vec(&text, &mut theirs, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(
            ours.len() * 10 <= theirs.len() * 12,
            "{} bytes against zlib's {}",
            ours.len(),
            theirs.len()
        );
        assert!(
            ours.len() * 3 < text.len(),
            "{} of {}",
            ours.len(),
            text.len()
        );
    }
}
