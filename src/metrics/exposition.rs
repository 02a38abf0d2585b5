//! The encoded `/metrics` body, built from segments that are re-encoded only when their
//! part changed, gathered in runs. Each segment also keeps its own raw-deflate form, so the
//! gzip body is the segments' deflate streams as one gzip member (CRCs combined run by run),
//! not 7 MB recompressed after every poll. The text goes out as one frame of shared pieces,
//! so large `writev` calls send it without a copy.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use hyper::body::{Frame, SizeHint};

use super::crc::Crc;
use super::deflate::Deflater;

/// gzip member header: deflate, no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty fixed-Huffman deflate block: ends the spliced stream.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// A piece of the exposition text: whole lines, encoded once.
pub struct Segment {
    pub plain: Bytes,
    deflated: OnceLock<Deflated>,
}

struct Deflated {
    /// Raw deflate ending in a sync flush: byte-aligned, not final, splicable.
    data: Bytes,
    crc: Crc,
}

impl Segment {
    pub fn new(plain: Vec<u8>) -> Arc<Segment> {
        Arc::new(Segment {
            plain: Bytes::from(plain),
            deflated: OnceLock::new(),
        })
    }

    fn deflated(&self) -> &Deflated {
        self.deflated.get_or_init(|| Deflated {
            data: deflate(&self.plain),
            crc: Crc::of(&self.plain),
        })
    }
}

/// Raw deflate of `plain`, ending in a sync flush (see [`Deflater::deflate`]). One
/// deflater and output buffer are kept and reused.
fn deflate(plain: &[u8]) -> Bytes {
    static DEFLATE: Mutex<Option<(Deflater, Vec<u8>)>> = Mutex::new(None);
    let mut guard = DEFLATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (deflater, out) =
        guard.get_or_insert_with(|| (Deflater::new(), Vec::with_capacity(16 * 1024)));
    out.clear();
    deflater.deflate(plain, out);
    // Copied out at its exact size; the buffer stays for the next segment.
    let data = Bytes::copy_from_slice(out);
    if out.capacity() > 256 * 1024 {
        *out = Vec::with_capacity(16 * 1024);
    }
    data
}

/// Consecutive segments, with the CRC of their text combined and their deflate streams
/// gathered into pieces on first demand. A change combines and gathers again only the run
/// holding it: a gzip body combines a few hundred CRCs instead of thousands, and copies
/// only the streams of the runs that changed.
pub struct Run {
    segments: Vec<Arc<Segment>>,
    len: u64,
    crc: OnceLock<Crc>,
    gzip: OnceLock<Vec<Bytes>>,
}

impl Run {
    pub fn new(segments: Vec<Arc<Segment>>) -> Arc<Run> {
        let len = segments.iter().map(|s| s.plain.len() as u64).sum();
        Arc::new(Run {
            segments,
            len,
            crc: OnceLock::new(),
            gzip: OnceLock::new(),
        })
    }

    /// The run's deflate streams, small ones copied together into pieces of about
    /// [`GZIP_PIECE`], a stream that large shared as it is.
    fn gzip_pieces(&self) -> &[Bytes] {
        self.gzip.get_or_init(|| {
            let mut pieces = Pieces::new(self.deflated().map(|d| d.data.len()).sum());
            for d in self.deflated() {
                pieces.add(&d.data, GZIP_PIECE);
            }
            pieces.finish()
        })
    }

    /// The segments with text, each deflated on first demand.
    fn deflated(&self) -> impl Iterator<Item = &Deflated> {
        self.segments
            .iter()
            .filter(|s| !s.plain.is_empty())
            .map(|s| s.deflated())
    }

    fn crc(&self) -> &Crc {
        self.crc
            .get_or_init(|| Crc::join(self.deflated().map(|d| &d.crc)))
    }
}

#[cfg(test)]
impl Run {
    /// The run's text in one buffer.
    pub(super) fn segments_text(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| s.plain.to_vec())
            .collect()
    }
}

/// One complete body: its runs in order, shared by every scrape until something changes;
/// the gzip form is assembled on first demand.
pub struct Exposition {
    pub(super) generation: u64,
    pub(super) built: tokio::time::Instant,
    runs: Vec<Arc<Run>>,
    len: u64,
    plain: OnceLock<Arc<[Bytes]>>,
    gzip: OnceLock<Arc<[Bytes]>>,
}

impl Exposition {
    /// `built`: when the oldest of the runs was encoded.
    pub(super) fn new(
        generation: u64,
        built: tokio::time::Instant,
        runs: Vec<Arc<Run>>,
    ) -> Exposition {
        let len = runs.iter().map(|r| r.len).sum();
        Exposition {
            generation,
            built,
            runs,
            len,
            plain: OnceLock::new(),
            gzip: OnceLock::new(),
        }
    }

    /// The text exposition as a response body (no copy: the segments' bytes are shared).
    pub fn plain(&self) -> Body {
        Body::new(self.plain_parts().clone())
    }

    /// Lists the text's pieces now, so that serving it later costs nothing. Only bodies
    /// served as text list them: with thousands of segments, listing and later releasing
    /// them is a good part of what a new body costs.
    pub fn prepare_plain(&self) {
        self.plain_parts();
    }

    fn plain_parts(&self) -> &Arc<[Bytes]> {
        self.plain.get_or_init(|| {
            Chunks::list(
                self.runs
                    .iter()
                    .flat_map(|r| &r.segments)
                    .map(|s| s.plain.clone()),
            )
        })
    }

    /// The same exposition gzip-encoded (some 7% of the text): one gzip member made of the
    /// segments' deflate streams between a header and a trailer, nothing recompressed.
    /// A segment's stream is often under a kilobyte, and `writev` calls of 64 such pieces
    /// sent the body of 10,000 targets and as many registries at three quarters of the
    /// rate of one buffer, far more than a copy costs. So each run gathers its small
    /// streams into pieces of [`GZIP_PIECE`] or so, once; a body shares the runs' pieces of
    /// [`GZIP_SHARED`] and more, and copies only smaller ones (a short run, a run's last
    /// piece) together. While polls go on, a new body thus copies the runs that changed,
    /// not the whole compressed body.
    pub fn gzip(&self) -> Body {
        Body::new(self.gzip_parts().clone())
    }

    /// Assembles the gzip form now, so that serving it later costs nothing.
    pub fn prepare_gzip(&self) {
        self.gzip_parts();
    }

    /// The gzip form is ready (a scrape asking for it will not wait).
    pub fn has_gzip(&self) -> bool {
        self.gzip.get().is_some()
    }

    fn gzip_parts(&self) -> &Arc<[Bytes]> {
        self.gzip.get_or_init(|| {
            let crc = Crc::join(self.runs.iter().map(|r| r.crc()));
            // More pieces than one `writev` takes cost a second call and a fifth more CPU
            // per scrape: then larger pieces are copied together too, up to all of them.
            let mut share_at = GZIP_SHARED;
            loop {
                let parts = self.assemble_gzip(crc, share_at);
                if parts.len() <= WRITEV_PIECES || share_at > GZIP_PIECE {
                    break Chunks::list(parts);
                }
                share_at *= 2;
            }
        })
    }

    /// The gzip member: header, the runs' pieces (shared from `share_at` bytes on, copied
    /// together below), trailer.
    fn assemble_gzip(&self, crc: Crc, share_at: usize) -> Vec<Bytes> {
        let streams = self.runs.iter().flat_map(|r| r.gzip_pieces());
        let total = streams.clone().map(Bytes::len).sum::<usize>();
        // The trailer: the end block, then CRC and length, four bytes each.
        let mut pieces = Pieces::new(GZIP_HEADER.len() + total + DEFLATE_END.len() + 8);
        pieces.copy(&GZIP_HEADER);
        for piece in streams {
            pieces.add(piece, share_at);
        }
        pieces.copy(&DEFLATE_END);
        pieces.copy(&crc.value().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        pieces.copy(&(self.len as u32).to_le_bytes());
        pieces.finish()
    }

    /// The whole text in one buffer (for `once` and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for segment in self.runs.iter().flat_map(|r| &r.segments) {
            out.extend_from_slice(&segment.plain);
        }
        out
    }
}

/// The size the gzip body's small deflate streams are gathered into: large enough for
/// `writev` to send the body in a few calls, small enough to come from the allocator's
/// arenas rather than a mapping of its own each (see [`crate::memory::MMAP_THRESHOLD`]),
/// which would cost page faults for every new body.
pub const GZIP_PIECE: usize = 64 * 1024;

/// A run's piece this large goes into a gzip body shared, not copied: big enough that a
/// body is sent in a few dozen pieces, so that `writev` still sends it in large writes.
const GZIP_SHARED: usize = 8 * 1024;

/// The pieces of a body that hyper sends with one `writev`: it passes at most 64, and the
/// response head is one of them. A body of up to 63 × [`GZIP_PIECE`] (4 MB) is kept to this
/// many.
const WRITEV_PIECES: usize = 63;

/// Deflate streams as they are gathered into pieces.
struct Pieces {
    done: Vec<Bytes>,
    current: Vec<u8>,
    /// Bytes still to come, so that a piece is allocated no larger than what it will hold.
    left: usize,
}

impl Pieces {
    /// For `total` bytes of streams in all.
    fn new(total: usize) -> Pieces {
        Pieces {
            done: Vec::new(),
            current: Vec::new(),
            left: total,
        }
    }

    /// Appends bytes to the piece being gathered, starting a new one when it is full.
    fn copy(&mut self, bytes: &[u8]) {
        if self.current.len() + bytes.len() > GZIP_PIECE {
            self.flush();
        }
        if self.current.capacity() == 0 {
            self.current
                .reserve_exact(self.left.min(GZIP_PIECE).max(bytes.len()));
        }
        self.current.extend_from_slice(bytes);
        self.left = self.left.saturating_sub(bytes.len());
    }

    /// A stream: shared when it is at least `share_at` long, copied otherwise.
    fn add(&mut self, stream: &Bytes, share_at: usize) {
        if stream.len() >= share_at {
            self.flush();
            self.done.push(stream.clone());
            self.left = self.left.saturating_sub(stream.len());
        } else {
            self.copy(stream);
        }
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            let piece = std::mem::take(&mut self.current);
            // A short last piece is cut to its length: it lives as long as the body.
            self.done.push(if piece.len() < piece.capacity() / 2 {
                Bytes::copy_from_slice(&piece)
            } else {
                Bytes::from(piece)
            });
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.done
    }
}

/// Shared pieces of a response, written as one: hyper hands up to 64 of them to a single
/// `writev`, so a 7 MB body made of hundreds of segments goes out in large writes without
/// being copied into one buffer first. The list itself is shared too: a scrape costs one
/// reference count, not one per piece.
pub struct Chunks {
    /// Never holds an empty piece, so `chunk()` is empty only at the end.
    parts: Arc<[Bytes]>,
    /// The piece being written, and how much of it is already out.
    next: usize,
    offset: usize,
    remaining: usize,
}

impl Chunks {
    fn new(parts: Arc<[Bytes]>) -> Chunks {
        let remaining = parts.iter().map(Bytes::len).sum();
        Chunks {
            parts,
            next: 0,
            offset: 0,
            remaining,
        }
    }

    /// A shareable list of pieces, without the empty ones.
    fn list(parts: impl IntoIterator<Item = Bytes>) -> Arc<[Bytes]> {
        parts.into_iter().filter(|p| !p.is_empty()).collect()
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.get(self.next).map_or(&[], |p| &p[self.offset..])
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(part) = self.parts.get(self.next) else {
                break;
            };
            let step = cnt.min(part.len() - self.offset);
            self.offset += step;
            self.remaining -= step;
            cnt -= step;
            if self.offset == part.len() {
                self.next += 1;
                self.offset = 0;
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let pending = self.parts.get(self.next..).unwrap_or_default();
        for (i, (slot, part)) in dst.iter_mut().zip(pending).enumerate() {
            *slot = IoSlice::new(if i == 0 { &part[self.offset..] } else { part });
            n += 1;
        }
        n
    }
}

/// A response body: all of it in one frame of shared pieces, with its exact length.
pub struct Body {
    data: Option<Chunks>,
    len: u64,
}

impl Body {
    fn new(parts: Arc<[Bytes]>) -> Body {
        let data = Chunks::new(parts);
        Body {
            len: data.remaining as u64,
            data: Some(data).filter(|d| d.remaining > 0),
        }
    }

    /// A body of static text.
    pub fn from_static(text: &'static str) -> Body {
        Body::new(Chunks::list([Bytes::from_static(text.as_bytes())]))
    }

    /// A body of owned bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Body {
        Body::new(Chunks::list([Bytes::from(bytes)]))
    }
}

impl hyper::body::Body for Body {
    type Data = Chunks;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunks>, Self::Error>>> {
        let data = self.data.take();
        if data.is_some() {
            self.len = 0;
        }
        Poll::Ready(data.map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Writes `n` in decimal. Most of a line's value is numbers, and this is a fraction of
/// what `write!` costs through the formatting machinery.
pub fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes `secs.mmm`: seconds with three decimals (`millis` below 1000).
pub fn write_seconds(secs: u64, millis: u32, out: &mut Vec<u8>) {
    write_u64(secs, out);
    let millis = millis.min(999);
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
    ]);
}

/// Writes a moment as Unix seconds with three decimals (0 before the epoch).
pub fn write_time(t: std::time::SystemTime, out: &mut Vec<u8>) {
    let d = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    write_seconds(d.as_secs(), d.subsec_millis(), out);
}

/// Escapes a label value for the text format.
pub fn escape_label(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    // Most values have nothing to escape; this test runs without a branch per byte.
    let special = |b: u8| b == b'\\' || b == b'"' || b == b'\n';
    if !bytes.iter().fold(false, |any, &b| any | special(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn numbers_are_written_as_formatting_would() {
        for n in [0, 7, 10, 99, 1_000, 1_764_567_890, u64::MAX] {
            let mut out = Vec::new();
            write_u64(n, &mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for (secs, millis, text) in [
            (0, 0, "0.000"),
            (1_764_567_890, 5, "1764567890.005"),
            (12, 40, "12.040"),
            (12, 999, "12.999"),
        ] {
            let mut out = Vec::new();
            write_seconds(secs, millis, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
    use std::io::Read;

    async fn collect(body: Body) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn spliced_gzip_is_one_valid_member_of_the_whole_text() {
        let segments: Vec<Arc<Segment>> = (0..50)
            .map(|i| Segment::new(format!("line {i} {}\n", "x".repeat(i * 97)).into_bytes()))
            .chain([Segment::new(Vec::new())])
            .collect();
        // Runs of several segments, of one, and empty ones.
        let mut runs: Vec<Arc<Run>> = segments.chunks(7).map(|c| Run::new(c.to_vec())).collect();
        runs.insert(3, Run::new(Vec::new()));
        runs.push(Run::new(vec![Segment::new(Vec::new())]));
        let e = Exposition::new(1, tokio::time::Instant::now(), runs);
        let plain = collect(e.plain()).await;
        assert_eq!(plain, e.to_vec());
        let gz = collect(e.gzip()).await;
        let mut decoder = flate2::read::GzDecoder::new(&gz[..]);
        let mut text = Vec::new();
        decoder.read_to_end(&mut text).unwrap();
        assert_eq!(
            text, plain,
            "one member decodes to the whole text (CRC and length checked)"
        );
        // Single-member readers stop after the first member: nothing may follow it.
        let mut rest = Vec::new();
        decoder.into_inner().read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    /// Pseudo-random bytes: they do not compress.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[tokio::test]
    async fn large_and_incompressible_segments_splice_too() {
        // The deflate output outgrows its buffer.
        let e = Exposition::new(
            1,
            tokio::time::Instant::now(),
            vec![
                Run::new(vec![
                    Segment::new(b"first\n".to_vec()),
                    Segment::new(noise(600_000, 0)),
                ]),
                Run::new(vec![Segment::new(b"last\n".to_vec())]),
            ],
        );
        let gz = collect(e.gzip()).await;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, e.to_vec());
    }

    #[tokio::test]
    async fn small_streams_are_gathered_into_pieces_and_a_large_one_is_shared() {
        // 300 streams of some 1.5 KB, one of 200 KB in the middle.
        let small = |i: u64| Segment::new(noise(1500, i));
        let large = Segment::new(noise(200_000, 1000));
        let runs = vec![
            Run::new((0..150).map(small).collect()),
            Run::new(vec![small(150), large.clone(), small(151)]),
            Run::new((152..300).map(small).collect()),
        ];
        let e = Exposition::new(1, tokio::time::Instant::now(), runs);
        let parts = e.gzip_parts();
        let shared = &large.deflated().data;
        let at = parts
            .iter()
            .position(|p| p.as_ptr() == shared.as_ptr() && p.len() == shared.len())
            .expect("the large stream is one of the pieces, not copied");
        let lens: Vec<usize> = parts.iter().map(Bytes::len).collect();
        for (i, len) in lens.iter().enumerate().filter(|&(i, _)| i != at) {
            assert!(*len <= GZIP_PIECE, "piece {i} of {lens:?}");
        }
        // Some 225 KB of small streams on each side: four pieces each, and a few short
        // ones between the runs, not 300.
        assert!((8..=16).contains(&lens.len()), "{lens:?}");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&collect(e.gzip()).await[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, e.to_vec());
    }

    #[tokio::test]
    async fn a_body_of_many_pieces_is_copied_into_few_enough_for_one_writev() {
        // 100 runs of one 12 KB stream each: shared as they are, they would make 100
        // pieces and more.
        let runs: Vec<Arc<Run>> = (0..100)
            .map(|i| Run::new(vec![Segment::new(noise(12_000, i))]))
            .collect();
        let e = Exposition::new(1, tokio::time::Instant::now(), runs);
        let lens: Vec<usize> = e.gzip_parts().iter().map(Bytes::len).collect();
        assert!(lens.len() <= WRITEV_PIECES, "{} pieces", lens.len());
        assert!(lens.iter().all(|&len| len <= GZIP_PIECE), "{lens:?}");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&collect(e.gzip()).await[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, e.to_vec());
    }

    #[tokio::test]
    async fn a_new_body_shares_the_pieces_of_the_runs_that_did_not_change() {
        let small = |i: u64| Segment::new(noise(1500, i));
        // Some 150 KB of streams: three pieces, all large enough to be shared.
        let kept = Run::new((0..100).map(small).collect());
        let changed = |seed: u64| Run::new((0..10).map(|i| small(seed + i)).collect());
        let now = tokio::time::Instant::now();
        let first = Exposition::new(1, now, vec![kept.clone(), changed(1000)]);
        let second = Exposition::new(2, now, vec![changed(2000), kept.clone()]);
        let pieces = kept.gzip_pieces();
        assert_eq!(
            pieces.len(),
            3,
            "{:?}",
            pieces.iter().map(Bytes::len).collect::<Vec<_>>()
        );
        for e in [&first, &second] {
            let parts = e.gzip_parts();
            for piece in pieces {
                assert!(
                    parts
                        .iter()
                        .any(|p| p.as_ptr() == piece.as_ptr() && p.len() == piece.len()),
                    "the kept run's piece of {} bytes is shared, not copied",
                    piece.len()
                );
            }
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(&collect(e.gzip()).await[..])
                .read_to_end(&mut text)
                .unwrap();
            assert_eq!(text, e.to_vec());
        }
    }

    #[test]
    fn chunks_advance_across_pieces_and_list_them_for_writev() {
        let mut c = Chunks::new(Chunks::list(
            [&b"ab"[..], b"", b"cde", b"f"].map(Bytes::from_static),
        ));
        assert_eq!(c.remaining(), 6);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(
            c.chunks_vectored(&mut slices),
            3,
            "empty pieces are dropped"
        );
        c.advance(3);
        assert_eq!((c.remaining(), c.chunk()), (3, &b"de"[..]));
        let mut two = [IoSlice::new(&[]); 1];
        assert_eq!(c.chunks_vectored(&mut two), 1);
        assert_eq!(&*two[0], b"de");
        c.advance(3);
        assert_eq!((c.remaining(), c.chunk()), (0, &b""[..]));
    }

    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        escape_label("a\"b\\c\nd", &mut out);
        assert_eq!(out, br#"a\"b\\c\nd"#);
        out.clear();
        escape_label("plain", &mut out);
        escape_label("\"", &mut out);
        assert_eq!(out, br#"plain\""#);
    }
}
