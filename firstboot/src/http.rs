//! A small HTTP/1.1 client: one request per connection (`Connection:
//! close`), plain TCP or TLS through rustls, bodies framed by Content-Length,
//! chunked encoding or end of stream. Every socket operation is bounded by
//! the caller's deadline. Enough for metadata services, etcd's JSON gateway
//! and file downloads; nothing more.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::retry::{remaining, Attempt};

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`?
    pub https: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when not written).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse `scheme://host[:port][/path]`. User info and fragments are refused.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if s.contains('#') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or a #fragment".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("must not contain user info (user@host)".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or("unclosed [ in the host")?;
            (&v6[..end], v6[end + 1..].strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("has an invalid port")?,
            None if https => 443,
            None => 80,
        };
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL's scheme and authority with another path.
    pub fn with_path(&self, path: &str) -> Url {
        let base = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        Url {
            path: format!("{base}{path}"),
            ..self.clone()
        }
    }

    /// The URL without its query string (which may carry credentials).
    pub fn redacted(&self) -> String {
        let path = self.path.split('?').next().unwrap_or("/");
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No TCP connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`
        addr: String,
        /// The last connect error.
        source: io::Error,
    },
    /// TLS failed: the server's certificate is not trusted, our client
    /// certificate was refused, or the protocol broke.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// `host:port`
        addr: String,
        /// rustls' description.
        reason: String,
    },
    /// The connection broke or timed out after it was made.
    #[error("I/O with {addr}: {source}")]
    Io {
        /// `host:port`
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// The server's answer is not HTTP as this client understands it.
    #[error("bad HTTP response from {addr}: {reason}")]
    Protocol {
        /// `host:port`
        addr: String,
        /// What is wrong.
        reason: String,
    },
}

impl HttpError {
    /// Connection and I/O failures are worth retrying; TLS and protocol
    /// failures are not.
    pub fn into_attempt(self) -> Attempt {
        match self {
            HttpError::Connect { .. } | HttpError::Io { .. } => Attempt::transient(self),
            HttpError::Tls { .. } | HttpError::Protocol { .. } => Attempt::permanent(self),
        }
    }
}

/// A response whose body has not been read yet.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    body: Box<dyn Read>,
    addr: String,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a reader (bounded by the request's deadline).
    pub fn into_reader(self) -> Box<dyn Read> {
        self.body
    }

    /// The whole body, refusing more than `limit` bytes.
    pub fn bytes(self, limit: u64) -> Result<Vec<u8>, HttpError> {
        let addr = self.addr;
        let mut out = Vec::new();
        self.body
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| io_error(&addr, e))?;
        if out.len() as u64 > limit {
            return Err(HttpError::Protocol {
                addr,
                reason: format!("body larger than {limit} bytes"),
            });
        }
        Ok(out)
    }
}

/// Classify an I/O error: errors carrying a rustls error are TLS failures.
fn io_error(addr: &str, e: io::Error) -> HttpError {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return HttpError::Tls {
            addr: addr.to_string(),
            reason: tls.to_string(),
        };
    }
    HttpError::Io {
        addr: addr.to_string(),
        source: e,
    }
}

/// A stream whose every read and write is bounded by a deadline.
struct Deadlined<S> {
    inner: S,
    sock: TcpStream,
    deadline: Instant,
}

impl<S> Deadlined<S> {
    fn arm(&self) -> io::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.sock.set_read_timeout(Some(remaining(self.deadline)))?;
        self.sock.set_write_timeout(Some(remaining(self.deadline)))
    }
}

impl<S: Read> Read for Deadlined<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Deadlined<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A connected stream, plain or TLS.
pub type Conn = Box<dyn ReadWrite>;

/// Read + Write, object safe.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Connect to `url`'s host; for https, complete the TLS handshake with `tls`.
pub fn connect(
    url: &Url,
    tls: Option<&Arc<ClientConfig>>,
    deadline: Instant,
) -> Result<Conn, HttpError> {
    let addr = url.authority();
    let connect_err = |source| HttpError::Connect {
        addr: addr.clone(),
        source,
    };
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(connect_err)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, remaining(deadline)) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let sock = sock.ok_or_else(|| connect_err(last))?;
    let plain = |s: &TcpStream| s.try_clone().map_err(|e| io_error(&addr, e));
    if !url.https {
        let inner = plain(&sock)?;
        return Ok(Box::new(Deadlined {
            inner,
            sock,
            deadline,
        }));
    }
    let cfg = tls.ok_or_else(|| HttpError::Tls {
        addr: addr.clone(),
        reason: "no TLS configuration for an https URL".into(),
    })?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| HttpError::Tls {
        addr: addr.clone(),
        reason: format!("invalid server name: {e}"),
    })?;
    let conn = ClientConnection::new(cfg.clone(), name).map_err(|e| HttpError::Tls {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    let mut stream = Deadlined {
        inner: StreamOwned::new(conn, plain(&sock)?),
        sock,
        deadline,
    };
    while stream.inner.conn.is_handshaking() {
        stream.arm().map_err(|e| io_error(&addr, e))?;
        let StreamOwned { conn, sock } = &mut stream.inner;
        conn.complete_io(sock).map_err(|e| io_error(&addr, e))?;
    }
    Ok(Box::new(stream))
}

/// Send one request and read the response head.
pub fn send(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    tls: Option<&Arc<ClientConfig>>,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let addr = url.authority();
    let mut conn = connect(url, tls, deadline)?;
    let default_port = if url.https { 443 } else { 80 };
    let host = if url.port == default_port {
        addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h)
    } else {
        addr.as_str()
    };
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: atomic-firstboot\r\nConnection: close\r\n",
        url.path
    );
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    conn.write_all(&msg)
        .and_then(|_| conn.flush())
        .map_err(|e| io_error(&addr, e))?;
    read_response(BufReader::new(conn), &addr, method == "HEAD")
}

fn proto(addr: &str, reason: impl Into<String>) -> HttpError {
    HttpError::Protocol {
        addr: addr.to_string(),
        reason: reason.into(),
    }
}

fn read_line(r: &mut impl BufRead, addr: &str) -> Result<String, HttpError> {
    let mut buf = Vec::new();
    r.take(8192)
        .read_until(b'\n', &mut buf)
        .map_err(|e| io_error(addr, e))?;
    if !buf.ends_with(b"\n") {
        return Err(proto(addr, "header line too long or connection closed"));
    }
    let s = String::from_utf8(buf).map_err(|_| proto(addr, "header is not UTF-8"))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(
    mut r: BufReader<Conn>,
    addr: &str,
    head_only: bool,
) -> Result<Response, HttpError> {
    loop {
        let status_line = read_line(&mut r, addr)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(proto(addr, "not an HTTP/1.x status line"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| proto(addr, "no status code"))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut r, addr)?;
            if line.is_empty() {
                break;
            }
            if headers.len() >= 200 {
                return Err(proto(addr, "too many headers"));
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| proto(addr, "header without ':'"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends: the real answer follows
        }
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body: Box<dyn Read> = if head_only || status == 204 || status == 304 {
            Box::new(io::empty())
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            Box::new(Chunked::new(r))
        } else if let Some(len) = find("content-length") {
            let len: u64 = len.parse().map_err(|_| proto(addr, "bad Content-Length"))?;
            Box::new(Exact {
                inner: r.take(len),
                left: len,
            })
        } else {
            Box::new(r)
        };
        return Ok(Response {
            status,
            headers,
            body,
            addr: addr.to_string(),
        });
    }
}

/// A Content-Length body: ending early is an error, not a short file.
struct Exact<R> {
    inner: io::Take<R>,
    left: u64,
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
    fn parses_urls() {
        let u = Url::parse("https://10.0.0.1:2379").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "10.0.0.1", 2379, "/")
        );
        let u = Url::parse("http://169.254.169.254/latest/user-data").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/latest/user-data"));
        let u = Url::parse("https://[fd00::1]:6443/x?y=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 6443));
        assert_eq!(u.authority(), "[fd00::1]:6443");
        assert_eq!(u.redacted(), "https://[fd00::1]:6443/x");
        let u = Url::parse("http://h?x").unwrap();
        assert_eq!(u.path, "/?x");
        assert_eq!(
            Url::parse("http://127.0.0.1:1/base/")
                .unwrap()
                .with_path("/a")
                .path,
            "/base/a"
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h/",
            "http://h:99999",
            "http://h:0",
            "http://h/a b",
            "https://h/#f",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

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
