//! A minimal blocking HTTP/1.1 client: one request per connection (`Connection: close`),
//! `Content-Length` or read-to-end bodies. Enough for cloud-hypervisor's API over a unix
//! socket and for HTTP health checks over TCP, without pulling an HTTP stack into the worker.

use std::io::{self, BufRead, BufReader, Read, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Largest response body read; health endpoints and the CH API answer far less.
const MAX_BODY: u64 = 1024 * 1024;

/// Sends one request on `stream` and reads the answer.
pub fn request<S: Read + Write>(
    stream: S,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    } else if method == "PUT" || method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;

    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = parse_status_line(&status_line).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP status line: {:?}", status_line.trim_end()),
        )
    })?;
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            reader.take(n.min(MAX_BODY)).read_to_end(&mut body)?;
        }
        // 204 and 304 never carry a body; others without a length run to the close.
        None if status == 204 || status == 304 => {}
        None => {
            reader.take(MAX_BODY).read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that answers with a canned response and records the request.
    struct Canned {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn canned(response: &str) -> Canned {
        Canned {
            input: Cursor::new(response.as_bytes().to_vec()),
            written: Vec::new(),
        }
    }

    #[test]
    fn reads_status_and_length_delimited_body() {
        let mut s = canned(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\n[\"x\"]trailing",
        );
        let r = request(&mut s, "PUT", "localhost", "/api/v1/vm.boot", Some("{}")).expect("ok");
        assert_eq!(r.status, 500);
        assert_eq!(r.body, "[\"x\"]");
        let sent = String::from_utf8(s.written).expect("utf8");
        assert!(sent.starts_with("PUT /api/v1/vm.boot HTTP/1.1\r\n"));
        assert!(sent.contains("Content-Length: 2\r\n"));
        assert!(sent.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn no_content_and_garbage() {
        let r = request(
            canned("HTTP/1.1 204 No Content\r\n\r\n"),
            "PUT",
            "h",
            "/",
            None,
        )
        .expect("ok");
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert!(request(canned("SSH-2.0-OpenSSH\r\n"), "GET", "h", "/", None).is_err());
    }
}
