//! Compression is recognised by magic bytes, not by media type (containers/image does the same).

use super::UnpackError;
use std::io::{BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    pub fn sniff(head: &[u8]) -> Result<Compression, UnpackError> {
        Ok(match head {
            [0x1f, 0x8b, 0x08, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [b'B', b'Z', b'h', ..] => return Err(UnpackError::UnsupportedCompression("bzip2")),
            _ => Compression::None,
        })
    }
}

/// What xz's threaded decoder may hold, so a whole import or unpack stays within 64 MiB of
/// peak RSS (the rest: skiff itself, about 10 MiB, and its copy buffers).
pub const XZ_THREADS_MEMORY: u64 = 48 << 20;

/// Wraps `input` in the decoder its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(
    input: R,
) -> Result<(Box<dyn Read + 'a>, Compression), UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered
        .fill_buf()
        .map_err(|e| UnpackError::Decompress(e.to_string()))?;
    let kind = Compression::sniff(head)?;
    let reader: Box<dyn Read> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| UnpackError::Decompress(e.to_string()))?,
        ),
        Compression::Xz => {
            // Threaded decoding where the file has several blocks (xz -T), as many threads as
            // XZ_THREADS_MEMORY holds: each thread buffers a whole block (24 MiB at xz -6), so
            // unbounded threads cost ~110 MiB. liblzma lowers the thread count to fit, down to
            // one thread decoding beside the caller, or direct single-threaded decoding.
            let threads = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1);
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads)
                .memlimit_threading(XZ_THREADS_MEMORY)
                .memlimit_stop(u64::MAX)
                .decoder()
                .map_err(|e| UnpackError::Decompress(format!("xz: {e}")))?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(buffered, stream))
        }
    };
    Ok((reader, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_format_round_trips() {
        let data = b"hello tar stream".repeat(1000);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        for (bytes, want) in [
            (&data, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&xz, Compression::Xz),
        ] {
            let (mut r, kind) = decompress(&bytes[..]).unwrap();
            assert_eq!(kind, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
        assert!(matches!(
            Compression::sniff(b"BZh91AY"),
            Err(UnpackError::UnsupportedCompression(_))
        ));
    }
}
