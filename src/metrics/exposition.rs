//! The encoded `/metrics` body, built from segments that are re-encoded only when their
//! part changed. Each segment also keeps its own raw-deflate form, so the gzip body is the
//! segments' deflate streams spliced into one gzip member (CRCs combined), not 7 MB
//! recompressed after every poll.

use std::collections::VecDeque;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

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
    crc: crc32fast::Hasher,
}

impl Segment {
    pub fn new(plain: Vec<u8>) -> Arc<Segment> {
        Arc::new(Segment {
            plain: Bytes::from(plain),
            deflated: OnceLock::new(),
        })
    }

    fn deflated(&self) -> &Deflated {
        self.deflated.get_or_init(|| {
            let mut enc = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(self.plain.len() / 6 + 64),
                flate2::Compression::fast(),
            );
            // flush() is a sync flush: all input out, aligned to a byte, stream left open.
            enc.write_all(&self.plain)
                .and_then(|_| enc.flush())
                .expect("deflate into a Vec cannot fail");
            // Copied out at its exact size: the encoder's buffer has room to spare.
            let data = Bytes::copy_from_slice(enc.get_ref());
            let mut crc = crc32fast::Hasher::new();
            crc.update(&self.plain);
            Deflated { data, crc }
        })
    }
}

/// One complete body: its segments in order, shared by every scrape until something
/// changes; the gzip form is spliced on first demand.
pub struct Exposition {
    pub(super) generation: u64,
    pub(super) built: tokio::time::Instant,
    segments: Vec<Arc<Segment>>,
    len: u64,
    gzip: OnceLock<Bytes>,
}

impl Exposition {
    pub(super) fn new(generation: u64, segments: Vec<Arc<Segment>>) -> Exposition {
        let len = segments.iter().map(|s| s.plain.len() as u64).sum();
        Exposition {
            generation,
            built: tokio::time::Instant::now(),
            segments,
            len,
            gzip: OnceLock::new(),
        }
    }

    /// The text exposition as a response body (no copy: the segments' bytes are shared).
    pub fn plain(&self) -> Body {
        Body::new(
            self.segments.iter().map(|s| s.plain.clone()).collect(),
            self.len,
        )
    }

    /// The same exposition gzip-encoded: one gzip member, spliced once into one buffer
    /// (it is some 7% of the text).
    pub fn gzip(&self) -> Body {
        let gzip = self.gzip.get_or_init(|| {
            let deflated: Vec<&Deflated> = self
                .segments
                .iter()
                .filter(|s| !s.plain.is_empty())
                .map(|s| s.deflated())
                .collect();
            let size = deflated.iter().map(|d| d.data.len()).sum::<usize>() + 20;
            let mut out = Vec::with_capacity(size);
            out.extend_from_slice(&GZIP_HEADER);
            let mut crc = crc32fast::Hasher::new();
            for d in deflated {
                crc.combine(&d.crc);
                out.extend_from_slice(&d.data);
            }
            out.extend_from_slice(&DEFLATE_END);
            out.extend_from_slice(&crc.finalize().to_le_bytes());
            // ISIZE is the length modulo 2^32.
            out.extend_from_slice(&(self.len as u32).to_le_bytes());
            Bytes::from(out)
        });
        Body::new(VecDeque::from([gzip.clone()]), gzip.len() as u64)
    }

    /// The whole text in one buffer (for `once` and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for s in &self.segments {
            out.extend_from_slice(&s.plain);
        }
        out
    }
}

/// A response body made of shared chunks, with its exact length.
pub struct Body {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Body {
    fn new(parts: VecDeque<Bytes>, len: u64) -> Body {
        Body {
            parts,
            remaining: len,
        }
    }

    pub fn from_static(text: &'static str) -> Body {
        Body::new(
            VecDeque::from([Bytes::from_static(text.as_bytes())]),
            text.len() as u64,
        )
    }

    pub fn from_vec(bytes: Vec<u8>) -> Body {
        let len = bytes.len() as u64;
        Body::new(VecDeque::from([Bytes::from(bytes)]), len)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        while let Some(part) = self.parts.pop_front() {
            if !part.is_empty() {
                self.remaining -= part.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Escapes a label value for the text format.
pub fn escape_label(value: &str, out: &mut Vec<u8>) {
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
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
        let e = Exposition::new(1, segments);
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

    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        escape_label("a\"b\\c\nd", &mut out);
        assert_eq!(out, br#"a\"b\\c\nd"#);
    }
}
