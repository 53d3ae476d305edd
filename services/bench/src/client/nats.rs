//! NATS's text protocol as a subscriber reads it from a nats-server's WebSocket: whole
//! operations taken off the front of what was read, which may hold several, or part of one.

use super::ClientError;

/// One operation from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    /// A message's payload (`MSG`, or `HMSG` without its headers).
    Msg(Vec<u8>),
    Ping,
    Pong,
    /// `INFO`, `+OK`: nothing for the client to do.
    Other,
}

/// Longest control line taken: `INFO` is the longest the server sends.
const MAX_LINE: usize = 64 * 1024;
/// Largest message taken: a server's `max_payload` is at most 64 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Takes one whole operation off the front of `buf`; `None` while it is not all there.
pub fn parse(buf: &mut Vec<u8>) -> Result<Option<Op>, ClientError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err(ClientError::Reply(
                "a NATS control line without its end".into(),
            ));
        }
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let op = match verb.as_str() {
        "MSG" | "HMSG" => {
            // MSG <subject> <sid> [reply-to] <#bytes>
            // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            let args: Vec<&str> = words.collect();
            let bad = || ClientError::Reply(format!("a NATS message line not understood: {line}"));
            let size = |arg: &str| arg.parse::<usize>().map_err(|_| bad());
            let (headers, total) = match (verb.as_str(), args.as_slice()) {
                ("MSG", [_, _, total] | [_, _, _, total]) => (0, size(total)?),
                ("HMSG", [_, _, headers, total] | [_, _, _, headers, total]) => {
                    (size(headers)?, size(total)?)
                }
                _ => return Err(bad()),
            };
            if headers > total || total > MAX_MESSAGE {
                return Err(bad());
            }
            let start = end + 2;
            if buf.len() < start + total + 2 {
                return Ok(None);
            }
            let payload = buf[start + headers..start + total].to_vec();
            buf.drain(..start + total + 2);
            return Ok(Some(Op::Msg(payload)));
        }
        "PING" => Op::Ping,
        "PONG" => Op::Pong,
        "-ERR" => return Err(ClientError::Reply(line)),
        _ => Op::Other,
    };
    buf.drain(..end + 2);
    Ok(Some(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &mut Vec<u8>) -> Vec<Op> {
        std::iter::from_fn(|| parse(buf).unwrap()).collect()
    }

    #[test]
    fn operations_are_taken_whole_across_reads_with_and_without_headers() {
        let mut buf = b"INFO {\"a\":1}\r\nPONG\r\nMSG s 1 5\r\nhel".to_vec();
        assert_eq!(all(&mut buf), [Op::Other, Op::Pong]);
        buf.extend_from_slice(b"lo\r\nHMSG s 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n");
        assert_eq!(
            all(&mut buf),
            [
                Op::Msg(b"hello".to_vec()),
                Op::Msg(b"hi".to_vec()),
                Op::Ping
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn errors_and_lines_not_understood_are_errors_not_panics() {
        for line in [
            "-ERR 'Authorization Violation'\r\n",
            "MSG s 1\r\n",
            "HMSG s 1 9 2\r\n",
            "MSG s 1 18446744073709551615\r\n",
        ] {
            assert!(parse(&mut line.as_bytes().to_vec()).is_err(), "{line}");
        }
        assert!(parse(&mut vec![b'x'; MAX_LINE + 1]).is_err());
    }
}
