//! One DNS exchange over TCP, synchronously, bounded by a deadline.
//!
//! Why TCP: every authoritative server must serve it (RFC 7766); answers are never truncated,
//! so a large record set or a TSIG-signed answer needs no retry; a server that is down is
//! reported at once as "connection refused" rather than as silence; and updates, which are
//! not idempotent at the transport level, are never resent by a UDP retry.
//!
//! Why by hand: hickory's transports (`hickory-net`) are asynchronous and need a tokio
//! runtime, and its multiplexer reports an unsigned TSIG error answer (the server's BADSIG or
//! BADKEY refusal) only as a failed verification, hiding the reason an operator needs. The
//! framing itself is two length bytes before each message (RFC 1035 §4.2.2), so this module
//! is small; messages, signing and verification all stay hickory-proto's.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::error::DnsError;

/// Sends one encoded message to `server` and returns the encoded answer, all before
/// `deadline`. `timeout` is the budget the deadline came from, for the error message.
pub(crate) fn exchange_tcp(
    server: SocketAddr,
    request: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, DnsError> {
    let timed_out = |stage| DnsError::TimedOut {
        server,
        timeout,
        stage,
    };
    let remaining = |stage| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| timed_out(stage))
    };

    let mut stream = TcpStream::connect_timeout(&server, remaining("connecting")?).map_err(
        |source| match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out("connecting"),
            _ => DnsError::Unreachable { server, source },
        },
    )?;
    stream.set_nodelay(true).ok();

    let length = u16::try_from(request.len()).map_err(|_| {
        DnsError::InvalidInput(format!(
            "the DNS message is {} bytes long, more than the 65535 a message can have",
            request.len()
        ))
    })?;
    let mut framed = Vec::with_capacity(2 + request.len());
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    let stage = "sending the request";
    stream
        .set_write_timeout(Some(remaining(stage)?))
        .and_then(|()| stream.write_all(&framed))
        .map_err(|source| io_error(server, stage, source, timed_out))?;

    let mut length = [0u8; 2];
    read_exact_before(&mut stream, &mut length, &remaining, server, &timed_out)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    read_exact_before(&mut stream, &mut answer, &remaining, server, &timed_out)?;
    Ok(answer)
}

/// Fills `buffer`, resetting the read timeout before each read so that the whole read ends
/// by the deadline even when the answer trickles in.
fn read_exact_before(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    remaining: &dyn Fn(&'static str) -> Result<Duration, DnsError>,
    server: SocketAddr,
    timed_out: &dyn Fn(&'static str) -> DnsError,
) -> Result<(), DnsError> {
    let stage = "waiting for the answer";
    let mut filled = 0;
    while filled < buffer.len() {
        stream
            .set_read_timeout(Some(remaining(stage)?))
            .map_err(|source| io_error(server, stage, source, timed_out))?;
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => {
                return Err(DnsError::Connection {
                    server,
                    stage,
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before answering",
                    ),
                });
            }
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(io_error(server, stage, source, timed_out)),
        }
    }
    Ok(())
}

fn io_error(
    server: SocketAddr,
    stage: &'static str,
    source: io::Error,
    timed_out: impl Fn(&'static str) -> DnsError,
) -> DnsError {
    match source.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(stage),
        _ => DnsError::Connection {
            server,
            stage,
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_server_that_accepts_but_never_answers_times_out_by_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let error = exchange_tcp(server, b"question", started + timeout, timeout).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let text = error.to_string();
        assert!(
            text.contains(&server.to_string()) && text.contains("did not answer within 0.3s"),
            "{text}"
        );
        drop(listener);
    }

    #[test]
    fn the_answer_is_read_whole_after_its_length() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut connection, _) = listener.accept().unwrap();
            let mut length = [0u8; 2];
            connection.read_exact(&mut length).unwrap();
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
            connection.read_exact(&mut request).unwrap();
            // Answer in two pieces, to be reassembled.
            connection.write_all(&length).unwrap();
            connection.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            connection.write_all(&request).unwrap();
        });
        let timeout = Duration::from_secs(5);
        let answer = exchange_tcp(server, b"echo me", Instant::now() + timeout, timeout).unwrap();
        assert_eq!(answer, b"echo me");
        echo.join().unwrap();
    }
}
