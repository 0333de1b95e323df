//! The PROXY protocol (v1 text, v2 binary) a balancer in front of the edge
//! sends at the start of a connection, naming the viewer's address. The
//! header is read exactly (no byte of the request behind it is consumed)
//! and parsed by the `ppp` crate.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, HeaderResult};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (RFC-less, from the specification: 107 bytes).
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection closed or failed while the header was read.
    #[error("cannot read the PROXY header: {0}")]
    Read(#[from] std::io::Error),
    /// The first bytes are not a PROXY header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A v1 line longer than the specification allows.
    #[error("the PROXY v1 header is longer than {V1_MAX} bytes")]
    TooLong,
    /// A header the parser refused.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
}

/// Reads the PROXY header at the start of `io`: the viewer's address, or
/// `None` when the header carries none (v1 `UNKNOWN`, v2 `LOCAL`, or a
/// non-IP family), in which case the connection's own address stands.
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = vec![0u8; V2_SIGNATURE.len()];
    io.read_exact(&mut header).await?;
    if header == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        io.read_exact(&mut fixed).await?;
        header.extend_from_slice(&fixed);
        let length = u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
        let start = header.len();
        header.resize(start + length, 0);
        io.read_exact(&mut header[start..]).await?;
    } else if header.starts_with(b"PROXY ") {
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(ProxyHeaderError::TooLong);
            }
            header.push(io.read_u8().await?);
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    match HeaderResult::parse(&header) {
        HeaderResult::V1(Ok(parsed)) => Ok(match parsed.addresses {
            v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(parsed)) => Ok(match (parsed.command, parsed.addresses) {
            (v2::Command::Local, _) => None,
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (v2::Command::Proxy, _) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Invalid(format!("{e:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut io = bytes;
        let result = read_header(&mut io).await;
        (result, io.to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_viewer_and_leaves_the_request() {
        let (addr, rest) =
            read(b"PROXY TCP4 203.0.113.7 198.18.0.1 40000 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(addr.unwrap(), Some("203.0.113.7:40000".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (addr, rest) = read(b"PROXY UNKNOWN\r\nGET").await;
        assert_eq!(addr.unwrap(), None);
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn v2_names_the_viewer_and_leaves_the_request() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&[203, 0, 113, 9, 198, 18, 0, 1]);
        header.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        header.extend_from_slice(b"GET");
        let (addr, rest) = read(&header).await;
        assert_eq!(addr.unwrap(), Some("203.0.113.9:40000".parse().unwrap()));
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let (result, _) = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(matches!(result, Err(ProxyHeaderError::Missing)));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        let (result, _) = read(long.as_bytes()).await;
        assert!(matches!(result, Err(ProxyHeaderError::TooLong)));
        let (result, _) = read(b"PROXY TCP4 not-an-address 1.2.3.4 1 2\r\n").await;
        assert!(matches!(result, Err(ProxyHeaderError::Invalid(_))));
        let (result, _) = read(b"PROXY TC").await;
        assert!(matches!(result, Err(ProxyHeaderError::Read(_))));
    }
}
