//! Receiving one NAR upload: stream it to a temporary file while hashing what arrives and what
//! it decompresses to, so that it can be checked against its name now and against its narinfo
//! later without ever holding it in memory.
//!
//! Runs on the blocking pool: hashing and decompression are CPU work, and the file writes are
//! plain `std::fs` writes. Chunks come from the request body through a bounded channel, which is
//! what applies back-pressure to the client.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::sync::mpsc;

use crate::names::{Compression, NarFileName};

/// What every NAR starts with: the string "nix-archive-1" in NAR's length-prefixed, padded form.
const NAR_MAGIC: &[u8; 24] = b"\x0d\0\0\0\0\0\0\0nix-archive-1\0\0\0";

/// zstd level for NARs that arrive uncompressed: level 3 compresses at several hundred MB/s on
/// one core, so the cache keeps up with an upload over a fast link.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The client went away or the body broke off: a truncated upload.
    #[error("upload body ended early")]
    Body(#[source] io::Error),
    #[error("writing the upload to disk failed")]
    Disk(#[source] io::Error),
    #[error("the uploaded bytes hash to {actual}, not to the {expected} their file name promises")]
    NameMismatch { expected: String, actual: String },
    #[error("the upload does not decompress as {compression}: {source}")]
    Decompress {
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the upload is not a NAR (it does not start with the nix-archive-1 header)")]
    NotANar,
}

/// A verified upload, still in its temporary file.
#[derive(Debug)]
pub struct Ingested {
    pub temp: NamedTempFile,
    /// The name it is stored under (differs from the upload name when the cache compressed it).
    pub stored: NarFileName,
    pub file_size: u64,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
}

/// Hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks the first bytes of a NAR against [`NAR_MAGIC`] and discards everything.
#[derive(Default)]
struct MagicCheck {
    seen: usize,
    ok: bool,
    bad: bool,
}

impl Write for MagicCheck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.seen < NAR_MAGIC.len() {
            let take = buf.len().min(NAR_MAGIC.len() - self.seen);
            if buf[..take] != NAR_MAGIC[self.seen..self.seen + take] {
                self.bad = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a NAR header",
                ));
            }
            self.seen += take;
            self.ok = self.seen == NAR_MAGIC.len();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type NarSink = Hashing<MagicCheck>;

/// Where the decompressed NAR goes: through a decoder, or straight to the hash.
enum Decoder {
    Plain(NarSink),
    Xz(xz2::write::XzDecoder<NarSink>),
    Zstd(zstd::stream::write::Decoder<'static, NarSink>),
}

impl Decoder {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Plain(w) => w.write_all(buf),
            Decoder::Xz(w) => w.write_all(buf),
            Decoder::Zstd(w) => w.write_all(buf),
        }
    }

    /// Whether the NAR header check failed (as opposed to the decompressor).
    fn not_a_nar(&self) -> bool {
        match self {
            Decoder::Plain(w) => w.inner.bad,
            Decoder::Xz(w) => w.get_ref().inner.bad,
            Decoder::Zstd(w) => w.get_ref().inner.bad,
        }
    }

    fn finish(self) -> io::Result<NarSink> {
        match self {
            Decoder::Plain(w) => Ok(w),
            Decoder::Xz(mut w) => w.finish(),
            Decoder::Zstd(w) => w.finish(),
        }
    }
}

/// Where the bytes as stored go.
enum FileSink {
    AsUploaded(Hashing<BufWriter<File>>),
    Compress(zstd::stream::write::Encoder<'static, Hashing<BufWriter<File>>>),
}

/// Receives one upload named `name` into a temporary file in `spool`.
pub fn ingest(
    spool: &Path,
    name: &NarFileName,
    mut chunks: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<Ingested, IngestError> {
    let temp = tempfile::Builder::new()
        .suffix(".part")
        .tempfile_in(spool)
        .map_err(IngestError::Disk)?;
    let file = temp.reopen().map_err(IngestError::Disk)?;
    let out = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
    let mut sink = match name.compression {
        Compression::None => FileSink::Compress(
            zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(IngestError::Disk)?,
        ),
        Compression::Xz | Compression::Zstd => FileSink::AsUploaded(out),
    };
    let nar = Hashing::new(MagicCheck::default());
    let decompress_error = |source| IngestError::Decompress {
        compression: name.compression.as_str(),
        source,
    };
    let mut decoder = match name.compression {
        Compression::None => Decoder::Plain(nar),
        Compression::Xz => Decoder::Xz(xz2::write::XzDecoder::new_multi_decoder(nar)),
        Compression::Zstd => {
            Decoder::Zstd(zstd::stream::write::Decoder::new(nar).map_err(decompress_error)?)
        }
    };
    let mut upload = Sha256::new();

    while let Some(chunk) = chunks.blocking_recv() {
        let chunk = chunk.map_err(IngestError::Body)?;
        upload.update(&chunk);
        if let Err(e) = decoder.write_all(&chunk) {
            return Err(if decoder.not_a_nar() {
                IngestError::NotANar
            } else {
                decompress_error(e)
            });
        }
        match &mut sink {
            FileSink::AsUploaded(w) => w.write_all(&chunk),
            FileSink::Compress(w) => w.write_all(&chunk),
        }
        .map_err(IngestError::Disk)?;
    }

    let upload_hash: [u8; 32] = upload.finalize().into();
    if upload_hash != name.file_hash {
        return Err(IngestError::NameMismatch {
            expected: nix_base32::to_nix_base32(&name.file_hash),
            actual: nix_base32::to_nix_base32(&upload_hash),
        });
    }
    let (magic, nar_hash, nar_size) = decoder.finish().map_err(decompress_error)?.finish();
    if !magic.ok {
        return Err(IngestError::NotANar);
    }

    let written = match sink {
        FileSink::AsUploaded(w) => w,
        FileSink::Compress(w) => w.finish().map_err(IngestError::Disk)?,
    };
    let (buffered, file_hash, file_size) = written.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| IngestError::Disk(e.into_error()))?;
    // The rename that publishes the file must not become visible before its data is durable.
    file.sync_all().map_err(IngestError::Disk)?;

    let stored = match name.compression {
        Compression::None => NarFileName::new(file_hash, Compression::Zstd),
        _ => name.clone(),
    };
    Ok(Ingested {
        temp,
        stored,
        file_size,
        nar_hash,
        nar_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NAR holding one regular file with `contents`.
    fn nar_of(contents: &[u8]) -> Vec<u8> {
        fn str(out: &mut Vec<u8>, s: &[u8]) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
            out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
        }
        let mut out = Vec::new();
        for s in [
            &b"nix-archive-1"[..],
            b"(",
            b"type",
            b"regular",
            b"contents",
        ] {
            str(&mut out, s);
        }
        str(&mut out, contents);
        str(&mut out, b")");
        out
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// Ingests `body` into a spool directory that lives as long as the test.
    fn run(name: &NarFileName, body: Vec<io::Result<Bytes>>) -> Result<Ingested, IngestError> {
        static SPOOL: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let spool = SPOOL.get_or_init(|| tempfile::tempdir().expect("tempdir"));
        let (tx, rx) = mpsc::channel(body.len().max(1));
        for chunk in body {
            tx.try_send(chunk).expect("channel has room");
        }
        drop(tx);
        ingest(spool.path(), name, rx)
    }

    fn chunks(data: &[u8]) -> Vec<io::Result<Bytes>> {
        data.chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    #[test]
    fn zstd_upload_is_kept_as_is() {
        let nar = nar_of(b"hello\n");
        let compressed = zstd::encode_all(&nar[..], 3).expect("compress");
        let name = NarFileName::new(sha(&compressed), Compression::Zstd);
        let got = run(&name, chunks(&compressed)).expect("accepted");
        assert_eq!(got.stored, name);
        assert_eq!(got.nar_hash, sha(&nar));
        assert_eq!(got.nar_size, nar.len() as u64);
        assert_eq!(got.file_size, compressed.len() as u64);
        assert_eq!(
            std::fs::read(got.temp.path()).expect("temp file"),
            compressed
        );
    }

    #[test]
    fn xz_upload_is_verified_through_decompression() {
        let nar = nar_of(&[7u8; 100_000]);
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&nar).expect("compress");
        let compressed = enc.finish().expect("compress");
        let name = NarFileName::new(sha(&compressed), Compression::Xz);
        let got = run(&name, chunks(&compressed)).expect("accepted");
        assert_eq!(got.nar_hash, sha(&nar));
        assert_eq!(got.nar_size, nar.len() as u64);
    }

    #[test]
    fn uncompressed_upload_is_stored_as_zstd() {
        let nar = nar_of(b"plain");
        let name = NarFileName::new(sha(&nar), Compression::None);
        let got = run(&name, chunks(&nar)).expect("accepted");
        assert_eq!(got.stored.compression, Compression::Zstd);
        assert_eq!((got.nar_hash, got.nar_size), (sha(&nar), nar.len() as u64));
        let stored = std::fs::read(got.temp.path()).expect("temp file");
        assert_eq!(got.stored.file_hash, sha(&stored));
        assert_eq!(zstd::decode_all(&stored[..]).expect("zstd"), nar);
    }

    #[test]
    fn bytes_that_do_not_match_their_name_are_refused() {
        let nar = nar_of(b"hello\n");
        let mut corrupt = zstd::encode_all(&nar[..], 3).expect("compress");
        let name = NarFileName::new(sha(&corrupt), Compression::Zstd);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            run(&name, chunks(&corrupt)),
            Err(IngestError::NameMismatch { .. } | IngestError::Decompress { .. })
        ));
    }

    #[test]
    fn truncated_body_is_refused() {
        let nar = nar_of(b"hello\n");
        let name = NarFileName::new(sha(&nar), Compression::None);
        let mut body = chunks(&nar[..20]);
        body.push(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "reset")));
        assert!(matches!(run(&name, body), Err(IngestError::Body(_))));
    }

    #[test]
    fn non_nar_is_refused() {
        let junk = b"#!/bin/sh\necho this is not a nar at all\n".to_vec();
        let name = NarFileName::new(sha(&junk), Compression::None);
        assert!(matches!(
            run(&name, chunks(&junk)),
            Err(IngestError::NotANar)
        ));
        let short = nar_of(b"x")[..10].to_vec();
        let name = NarFileName::new(sha(&short), Compression::None);
        assert!(matches!(
            run(&name, chunks(&short)),
            Err(IngestError::NotANar)
        ));
    }
}
