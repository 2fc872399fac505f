//! Just enough RESP2 to drive a server: encode commands, read replies.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`, without the dash.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$n`, or `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n`, or `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: simple strings, bulk strings and errors (prefixed `ERR-REPLY:`
    /// is not added; callers check [`Reply::Error`] themselves).
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(s) | Reply::Error(s) => s.clone(),
            Reply::Integer(n) => n.to_string(),
            Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// Appends `args` as one RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn read_line<R: BufRead>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    let n = reader.read_until(b'\n', line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("reply line without CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(())
}

fn parse_int(bytes: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad integer in reply"))
}

/// Reads one complete reply.
pub fn read_reply<R: BufRead>(reader: &mut R) -> io::Result<Reply> {
    let mut line = Vec::new();
    read_line(reader, &mut line)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad("empty reply line"));
    };
    match kind {
        b'+' => Ok(Reply::Simple(String::from_utf8_lossy(rest).into_owned())),
        b'-' => Ok(Reply::Error(String::from_utf8_lossy(rest).into_owned())),
        b':' => Ok(Reply::Integer(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Bulk(None));
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            if !body.ends_with(b"\r\n") {
                return Err(bad("bulk string without CRLF"));
            }
            body.truncate(len);
            Ok(Reply::Bulk(Some(body)))
        }
        b'*' => {
            let len = parse_int(rest)?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(bad("unknown reply type")),
    }
}

/// One blocking connection for control commands (INFO, BGSAVE, DBSIZE).
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects with TCP_NODELAY and a read timeout of `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
            buf: Vec::new(),
        })
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.buf.clear();
        encode_command(&mut self.buf, args);
        self.writer.write_all(&self.buf)?;
        self.writer.flush()?;
        read_reply(&mut self.reader)
    }

    /// `INFO <section>` as text; an error reply becomes an `io::Error`.
    pub fn info(&mut self, section: &str) -> io::Result<String> {
        match self.call(&[b"INFO", section.as_bytes()])? {
            Reply::Error(e) => Err(io::Error::other(e)),
            reply => Ok(reply.text()),
        }
    }

    /// `DBSIZE`.
    pub fn dbsize(&mut self) -> io::Result<u64> {
        match self.call(&[b"DBSIZE"])? {
            Reply::Integer(n) => u64::try_from(n).map_err(|_| bad("negative DBSIZE")),
            other => Err(io::Error::other(format!("DBSIZE replied {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"vv"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n");
    }

    #[test]
    fn reads_every_reply_type() {
        let input = b"+OK\r\n-ERR no\r\n:-7\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let mut reader = &input[..];
        assert_eq!(read_reply(&mut reader).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(read_reply(&mut reader).unwrap(), Reply::Integer(-7));
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut reader).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Array(Some(vec![Reply::Integer(1), Reply::Bulk(Some(Vec::new()))]))
        );
        assert_eq!(read_reply(&mut reader).unwrap(), Reply::Array(None));
        assert!(read_reply(&mut reader).is_err());
    }

    #[test]
    fn refuses_a_truncated_reply() {
        let mut reader = &b"$5\r\nab"[..];
        assert!(read_reply(&mut reader).is_err());
        let mut reader = &b"+OK"[..];
        assert!(read_reply(&mut reader).is_err());
    }
}
