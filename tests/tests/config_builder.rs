//! The typed config builder of the tests and the lab writes only keys the
//! daemon reads, with values it accepts: every key set, parsed by lb.

use std::time::Duration;

use coexist_support::config::*;

#[test]
fn every_key_the_builder_writes_is_read_by_the_daemon() {
    let ms = Duration::from_millis;
    let address = |s: &str| s.parse().unwrap();
    let config = Config {
        tuning: Some(Tuning {
            pipe_size: Some(65536),
            pipe_pool_max: Some(64),
            splice: Some(false),
            shutdown_grace: Some(ms(1500)),
            backlog: Some(128),
            threads: Some(2),
        }),
        frontends: vec![
            Frontend {
                max_connections: Some(10),
                proxy_protocol: Some("v2".into()),
                ..Frontend::new(
                    "web",
                    [address("127.0.0.1:8080"), address("[2001:db8::10]:8080")],
                    "pool",
                )
            },
            Frontend {
                udp_idle_timeout: Some(Duration::from_secs(20)),
                udp_responses: Some(1),
                max_sessions: Some(5000),
                ..Frontend::udp("dns", [address("127.0.0.1:5353")], "dns")
            },
        ],
        backends: vec![
            Backend {
                balance: Some("maglev".into()),
                maglev_table_size: Some(65537),
                connect_timeout: Some(ms(500)),
                idle_timeout: Some(Duration::from_secs(60)),
                retries: Some(1),
                health_check: Some(HealthCheck {
                    path: Some("/health".into()),
                    host: Some("example.test".into()),
                    expect_status: Some("200-399".into()),
                    initial_state: Some("up".into()),
                    ..HealthCheck::every("http", ms(300), ms(200), 2, 3)
                }),
                ..Backend::new(
                    "pool",
                    [
                        Server {
                            backup: Some(true),
                            max_connections: Some(5),
                            ..Server::named("s1", address("[::1]:8001")).weight(2)
                        },
                        Server::at(address("127.0.0.1:8002")),
                    ],
                )
            },
            Backend {
                health_check: Some(HealthCheck {
                    query_name: Some("example.org".into()),
                    query_type: Some("SOA".into()),
                    expect_rcode: Some("NXDOMAIN".into()),
                    ..HealthCheck::every("dns", ms(300), ms(200), 2, 3)
                }),
                ..Backend::new("dns", [Server::at(address("[::1]:53"))])
            },
        ],
        vrrp: vec![Vrrp {
            priority: Some(150),
            advert_interval: Some(ms(100)),
            version: Some(3),
            preempt: Some(true),
            preempt_delay: Some(Duration::from_secs(2)),
            accept_mode: Some(true),
            track: vec![Track {
                frontend: "web".into(),
                weight: 60,
            }],
            unicast_peers: vec!["192.0.2.3".parse().unwrap()],
            virtual_mac: Some(true),
            notify: Some("/bin/true".into()),
            checksum: Some("message-only".into()),
            garp_count: Some(3),
            garp_interval: Some(ms(20)),
            garp_refresh: Some(Duration::from_secs(30)),
            ..Vrrp::new("v4", "eth0", 51, &["192.0.2.10/24"])
        }],
        bgp: Some(Bgp {
            engine: Some("bird".into()),
            control_socket: Some("/run/bird/node.ctl".into()),
            announce_after: Some(ms(500)),
            withdraw_settle: Some(ms(1500)),
            interface: Some("cx-announce".into()),
        }),
        announce: vec![Announce {
            name: "web".into(),
            prefixes: vec!["2001:db8::10".into()],
            track: vec![AnnounceTrack {
                frontend: "web".into(),
            }],
        }],
        ..Config::with_admin(address("127.0.0.1:9100"))
    };
    let text = config.to_toml();
    let parsed = lb::config::parse(&text, "built.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.tuning.shutdown_grace, ms(1500));
    assert_eq!(parsed.tuning.threads, Some(2));
    assert_eq!(parsed.frontends[0].max_connections, Some(10));
    let udp = parsed.frontends[1].udp().expect("a UDP frontend");
    assert_eq!(
        (udp.idle_timeout, udp.responses, udp.max_sessions),
        (Duration::from_secs(20), Some(1), 5000)
    );
    assert_eq!(
        parsed.backends[1].health_check.as_ref().unwrap().kind,
        lb::config::CheckKind::Dns {
            query_name: "example.org.".into(),
            query_type: 6,
            expect_rcodes: vec![3],
        }
    );
    let backend = &parsed.backends[0];
    assert_eq!(backend.servers[0].weight, 2);
    assert_eq!(backend.servers[1].name, "127.0.0.1:8002");
    assert_eq!(backend.health_check.as_ref().unwrap().interval, ms(300));
    let v = &parsed.vrrp[0];
    assert_eq!(v.wire.garp.refresh, Some(Duration::from_secs(30)));
    assert_eq!(v.config.tracks[0].weight, 60);
    let bgp = parsed.bgp.as_ref().unwrap();
    assert_eq!(bgp.withdraw_settle, ms(1500));
    assert_eq!(bgp.interface, "cx-announce");
    assert_eq!(parsed.announce[0].track, ["web"]);
}
