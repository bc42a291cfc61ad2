//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// Eddy's patch: the most a batch may decompress to. Decompressors used to grow their output
/// as far as the input said, so a request of a few KiB could ask for many GiB (a decompression
/// bomb, or a snappy length prefix) and abort the process.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Eddy's patch: a writer that fails once more than [`MAX_DECOMPRESSED_BYTES`] go through it.
#[allow(dead_code)]
pub(crate) struct Bounded<W> {
    pub(crate) inner: W,
    written: usize,
}

#[allow(dead_code)]
impl<W> Bounded<W> {
    pub(crate) fn new(inner: W) -> Self {
        Bounded { inner, written: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() > MAX_DECOMPRESSED_BYTES {
            return Err(too_large());
        }
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Eddy's patch: the error for output past [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn too_large() -> std::io::Error {
    std::io::Error::other(format!(
        "records decompress to more than {MAX_DECOMPRESSED_BYTES} bytes"
    ))
}

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}
