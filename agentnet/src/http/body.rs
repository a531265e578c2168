//! Response body framing: Content-Length (a short body is an error) and
//! chunked transfer encoding (extensions and trailers discarded).

use std::io::{self, BufRead, Read};

/// A Content-Length body: ending early is an error, not a short file.
pub struct Exact<R> {
    /// The connection, limited to the body.
    pub inner: io::Take<R>,
    /// Bytes still expected.
    pub left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Decodes `Transfer-Encoding: chunked`, discarding extensions and trailers.
pub struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    /// Decode chunks read from `inner`.
    pub fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        (&mut self.inner).take(4096).read_until(b'\n', &mut buf)?;
        if !buf.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated chunk framing",
            ));
        }
        Ok(String::from_utf8_lossy(&buf).trim().to_string())
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                while !self.line()?.is_empty() {} // trailers
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 && !self.line()?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_chunked_bodies_with_trailers() {
        let raw = b"4\r\nWiki\r\n7;ext=1\r\npedia i\r\n0\r\nGrpc-Trailer: x\r\n\r\n";
        let mut out = String::new();
        Chunked::new(&raw[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "Wikipedia i");
        let mut out = Vec::new();
        assert!(Chunked::new(&b"5\r\nab"[..]).read_to_end(&mut out).is_err());
        assert!(Chunked::new(&b"zz\r\n"[..]).read_to_end(&mut out).is_err());
    }
}
