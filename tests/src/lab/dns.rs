//! The lab's DNS: BIND 9 (`named`, Debian's bind9) on each IPv6-only
//! server, authoritative for `lab.` and naming itself in
//! `whoami.lab. TXT`, behind the nodes' UDP frontend "dns" on port 53 of
//! both VIPs; and a query client that records each query as a [`Conn`],
//! so the matrix judges DNS with the same analysis as TCP connections.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::clock::now_ns;
use super::load::{self, Conn, Pace};

pub const DNS_PORT: u16 = 53;
/// The name each server answers with its own name in a TXT record.
pub const WHOAMI: &str = "whoami.lab.";
/// A query unanswered this long fails (a stub resolver's first retry).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `named.conf` and the zone of server `name` (listening on
/// `listen`) under `dir`; returns the path of `named.conf`.
pub fn write_named(dir: &Path, name: &str, listen: Ipv6Addr) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let d = dir.display();
    let conf = format!(
        "options {{\n    directory \"{d}\";\n    pid-file \"{d}/named.pid\";\n    \
         session-keyfile \"{d}/session.key\";\n    listen-on {{ none; }};\n    \
         listen-on-v6 port {DNS_PORT} {{ {listen}; }};\n    recursion no;\n    \
         dnssec-validation no;\n    notify no;\n}};\n\
         controls {{ }};\n\
         zone \"lab.\" {{ type primary; file \"{d}/lab.zone\"; }};\n"
    );
    let zone = format!(
        "$TTL 60\n@ IN SOA ns.lab. admin.lab. 1 60 60 600 60\n@ IN NS ns.lab.\n\
         ns IN AAAA {listen}\nwhoami IN TXT \"{name}\"\n"
    );
    let zone_path = dir.join("lab.zone");
    std::fs::write(&zone_path, zone).with_context(|| format!("write {}", zone_path.display()))?;
    let conf_path = dir.join("named.conf");
    std::fs::write(&conf_path, conf).with_context(|| format!("write {}", conf_path.display()))?;
    Ok(conf_path)
}

/// `named` in the foreground, logging to stderr, with `conf`.
pub fn named_args(conf: &Path) -> Vec<String> {
    vec![
        "-g".into(),
        "-c".into(),
        conf.to_string_lossy().into_owned(),
    ]
}

/// Asks `target` for [`WHOAMI`] every `pace.every`, each query from a
/// new socket (a new source port, as resolvers do), and writes the
/// queries as a [`load::ClientRun`] to `out`: `server` is the answer,
/// `greeted_ns` when it came.
pub fn client(target: SocketAddr, pace: Pace, out: &Path) -> anyhow::Result<()> {
    load::record(target, out, pace, move |seed| one(target, seed))
}

async fn one(target: SocketAddr, seed: u64) -> Conn {
    let id = (seed & 0xffff) as u16;
    let mut conn = Conn::starting();
    let result = tokio::time::timeout(QUERY_TIMEOUT, ask(target, id))
        .await
        .unwrap_or_else(|_| Err("query: timed out".to_owned()));
    conn.end_ns = now_ns();
    match result {
        Ok(server) => {
            conn.greeted_ns = Some(conn.end_ns);
            conn.server = Some(server);
            conn.ok = true;
        }
        Err(e) => conn.error = Some(e),
    }
    conn
}

async fn ask(target: SocketAddr, id: u16) -> Result<String, String> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .send(&query(id))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buffer = [0u8; 1500];
    let n = socket
        .recv(&mut buffer)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    answered_by(&buffer[..n], id)
}

/// A query for [`WHOAMI`] TXT with `id`, recursion not desired.
pub fn query(id: u16) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(
            Name::from_ascii(WHOAMI).expect("a valid name"),
            RecordType::TXT,
        ));
    message.to_vec().expect("a query always encodes")
}

/// The server named in `reply`, an answer to query `id`: its first TXT
/// string.
pub fn answered_by(reply: &[u8], id: u16) -> Result<String, String> {
    let message = Message::from_vec(reply).map_err(|e| format!("malformed reply: {e}"))?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return Err(format!("not the answer to query {id}"));
    }
    if message.response_code() != ResponseCode::NoError {
        return Err(format!("rcode {}", message.response_code()));
    }
    message
        .answers()
        .iter()
        .find_map(|record| match record.data() {
            RData::TXT(txt) => txt
                .txt_data()
                .first()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            _ => None,
        })
        .ok_or_else(|| "no TXT answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::Record;

    fn reply(id: u16, rcode: ResponseCode, txt: Option<&str>) -> Vec<u8> {
        let mut m = Message::from_vec(&query(id)).unwrap();
        m.set_message_type(MessageType::Response)
            .set_response_code(rcode);
        if let Some(txt) = txt {
            m.add_answer(Record::from_rdata(
                Name::from_ascii(WHOAMI).unwrap(),
                60,
                RData::TXT(TXT::new(vec![txt.to_owned()])),
            ));
        }
        m.to_vec().unwrap()
    }

    // Input: a NOERROR answer to query 7 with TXT "srv2". Output: "srv2".
    #[test]
    fn the_txt_answer_names_the_server() {
        assert_eq!(
            answered_by(&reply(7, ResponseCode::NoError, Some("srv2")), 7),
            Ok("srv2".to_owned())
        );
    }

    // Input: another query's answer, a REFUSED, an empty answer, garbage.
    // Output: each an error, never a server.
    #[test]
    fn anything_but_a_txt_answer_to_this_query_fails() {
        assert!(answered_by(&reply(8, ResponseCode::NoError, Some("srv2")), 7).is_err());
        assert!(answered_by(&reply(7, ResponseCode::Refused, None), 7).is_err());
        assert!(answered_by(&reply(7, ResponseCode::NoError, None), 7).is_err());
        assert!(answered_by(&query(7), 7).is_err(), "a query is no answer");
        assert!(answered_by(b"\x00\x07", 7).is_err());
    }

    #[test]
    fn named_gets_a_config_and_a_zone_naming_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write_named(dir.path(), "srv1", "fd00:231:2::11".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains("listen-on-v6 port 53 { fd00:231:2::11; };"),
            "{text}"
        );
        assert!(text.contains("recursion no;"));
        let zone = std::fs::read_to_string(dir.path().join("lab.zone")).unwrap();
        assert!(zone.contains("whoami IN TXT \"srv1\""), "{zone}");
        assert_eq!(named_args(&conf)[..2], ["-g", "-c"]);
    }
}
