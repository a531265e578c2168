//! A small HTTP/1.1 client: one request per connection (`Connection:
//! close`), plain TCP or TLS through rustls, bodies framed by Content-Length,
//! chunked encoding or end of stream. Every socket operation is bounded by
//! the caller's deadline. Enough for metadata services, etcd's JSON gateway
//! and file downloads; nothing more.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::retry::{remaining, Attempt};

mod body;
mod url;

use body::{Chunked, Exact};
pub use url::Url;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No TCP connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to {addr}")]
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
    #[error("I/O with {addr}")]
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
    parse_response(BufReader::new(conn), &addr, method == "HEAD")
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

/// Read a response (status line, headers, body framing) from `r`, which
/// the connection to `addr` feeds: 1xx answers skipped, the body framed by
/// chunked encoding, Content-Length or the end of the stream. Public so
/// that the parser can be tested (and fuzzed) on bytes.
pub fn parse_response<R: BufRead + 'static>(
    mut r: R,
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
