//! Active checks of UDP servers: a DNS query (`kind = "dns"`) and a plain
//! datagram send-expect (`kind = "udp"`).
//!
//! Each check uses a socket connected to the server, so an ICMP port
//! unreachable comes back as a refused receive and fails the check at once
//! instead of waiting for the timeout. The caller bounds the whole probe by
//! the check's timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use super::CheckFailure;
use crate::config::dns_rcode_name;

/// Enough for any DNS reply over UDP with EDNS, and for a send-expect prefix.
const REPLY_BUFFER: usize = 4096;

/// Sends `send`; healthy on a reply starting with `expect`, or on any reply
/// when `expect` is `None`.
pub(super) async fn send_expect(
    socket: UdpSocket,
    send: &[u8],
    expect: Option<&[u8]>,
) -> Result<(), String> {
    socket.send(send).await.map_err(|e| describe(&e, "send"))?;
    let mut reply = [0u8; REPLY_BUFFER];
    let n = socket
        .recv(&mut reply)
        .await
        .map_err(|e| describe(&e, "receive"))?;
    let reply = &reply[..n];
    match expect {
        Some(expect) if !reply.starts_with(expect) => Err(format!(
            "expected reply starting with {:?}, got {:?}",
            String::from_utf8_lossy(expect),
            String::from_utf8_lossy(&reply[..reply.len().min(64)])
        )),
        _ => Ok(()),
    }
}

/// Asks `query_name`/`query_type`; healthy on a well-formed answer to this
/// very question whose RCODE is in `expect_rcodes`. Datagrams that are not
/// an answer to it (a late reply to an earlier check) are skipped.
pub(super) async fn dns(
    socket: UdpSocket,
    query_name: &str,
    query_type: u16,
    expect_rcodes: &[u16],
) -> Result<(), String> {
    let name = Name::from_ascii(query_name).map_err(|e| format!("bad query name: {e}"))?;
    let query_type = RecordType::from(query_type);
    let id: u16 = rand::random();
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), query_type));
    let request = message
        .to_vec()
        .map_err(|e| format!("cannot encode the DNS query: {e}"))?;

    socket
        .send(&request)
        .await
        .map_err(|e| describe(&e, "send"))?;
    let mut buffer = [0u8; REPLY_BUFFER];
    loop {
        let n = socket
            .recv(&mut buffer)
            .await
            .map_err(|e| describe(&e, "receive"))?;
        let reply = match Message::from_vec(&buffer[..n]) {
            Ok(reply) => reply,
            Err(e) => return Err(format!("malformed DNS reply: {e}")),
        };
        if reply.id() != id || reply.message_type() != MessageType::Response {
            continue;
        }
        let answers_our_question = reply.op_code() == OpCode::Query
            && reply
                .queries()
                .iter()
                .any(|q| q.query_type() == query_type && q.name().eq_case(&name));
        if !answers_our_question {
            return Err("DNS reply does not answer the question asked".to_owned());
        }
        let rcode = u16::from(reply.response_code());
        return if expect_rcodes.contains(&rcode) {
            Ok(())
        } else {
            let expected: Vec<String> = expect_rcodes.iter().map(|c| dns_rcode_name(*c)).collect();
            Err(format!(
                "expected RCODE {}, got {}",
                expected.join(" or "),
                dns_rcode_name(rcode)
            ))
        };
    }
}

/// A socket of the server's family, connected to it.
pub(super) async fn connected(address: SocketAddr) -> Result<UdpSocket, CheckFailure> {
    let local: SocketAddr = match address {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(CheckFailure::of_connect)?;
    socket
        .connect(address)
        .await
        .map_err(CheckFailure::of_connect)?;
    Ok(socket)
}

/// "port unreachable" for the ICMP error a connected socket reports as a
/// refusal; the operation and the error otherwise.
fn describe(error: &io::Error, operation: &str) -> String {
    if error.kind() == io::ErrorKind::ConnectionRefused {
        "port unreachable".to_owned()
    } else {
        format!("{operation} failed: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A responder that answers each datagram with `reply(request)`.
    async fn responder(reply: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let _ = socket.send_to(&reply(&buffer[..n]), peer).await;
            }
        });
        address
    }

    fn answer(request: &[u8], rcode: hickory_proto::op::ResponseCode) -> Vec<u8> {
        let request = Message::from_vec(request).unwrap();
        let mut reply = Message::new();
        reply
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_response_code(rcode)
            .add_queries(request.queries().to_vec());
        reply.to_vec().unwrap()
    }

    async fn open_to(server: SocketAddr) -> UdpSocket {
        connected(server).await.expect("a UDP socket")
    }

    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("check finished within 5 s")
    }

    #[tokio::test]
    async fn dns_check_passes_on_an_expected_rcode_and_names_a_wrong_one() {
        use hickory_proto::op::ResponseCode;
        let ok = responder(|r| answer(r, ResponseCode::NoError)).await;
        let refused = responder(|r| answer(r, ResponseCode::Refused)).await;
        assert_eq!(
            bounded(dns(open_to(ok).await, "example.test.", 6, &[0])).await,
            Ok(())
        );
        assert_eq!(
            bounded(dns(open_to(refused).await, "example.test.", 6, &[0, 3])).await,
            Err("expected RCODE NOERROR or NXDOMAIN, got REFUSED".to_owned())
        );
        assert_eq!(
            bounded(dns(open_to(refused).await, "example.test.", 6, &[5])).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn dns_check_rejects_garbage_and_answers_to_other_questions() {
        let garbage = responder(|_| b"\xff\xfe not dns".to_vec()).await;
        let error = bounded(dns(open_to(garbage).await, "example.test.", 1, &[0]))
            .await
            .unwrap_err();
        assert!(error.starts_with("malformed DNS reply"), "{error}");

        let other_question = responder(|r| {
            let mut reply = Message::from_vec(r).unwrap();
            reply.set_message_type(MessageType::Response);
            let mut queries = reply.take_queries();
            queries[0].set_query_type(RecordType::TXT);
            reply.add_queries(queries);
            reply.to_vec().unwrap()
        })
        .await;
        assert_eq!(
            bounded(dns(open_to(other_question).await, "example.test.", 1, &[0])).await,
            Err("DNS reply does not answer the question asked".to_owned())
        );
    }

    #[tokio::test]
    async fn udp_send_expect_compares_the_reply_prefix() {
        let echo = responder(<[u8]>::to_vec).await;
        assert_eq!(
            bounded(send_expect(open_to(echo).await, b"ping", Some(b"pi"))).await,
            Ok(())
        );
        assert_eq!(
            bounded(send_expect(open_to(echo).await, b"ping", None)).await,
            Ok(())
        );
        let error = bounded(send_expect(open_to(echo).await, b"ping", Some(b"pong")))
            .await
            .unwrap_err();
        assert!(error.contains("\"pong\""), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_fails_as_port_unreachable() {
        for family in ["127.0.0.1:0", "[::1]:0"] {
            let socket = std::net::UdpSocket::bind(family).unwrap();
            let closed = socket.local_addr().unwrap();
            drop(socket);
            assert_eq!(
                bounded(send_expect(open_to(closed).await, b"ping", None)).await,
                Err("port unreachable".to_owned())
            );
            assert_eq!(
                bounded(dns(open_to(closed).await, ".", 6, &[0])).await,
                Err("port unreachable".to_owned())
            );
        }
    }
}
