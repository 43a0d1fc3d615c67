//! The verification matrix of issue 7, run as `coexist-lab` runs it: two
//! coexist nodes (load balancer + VRRPv3 for IPv4 and IPv6 at 100 ms)
//! between an IPv4-only and an IPv6-only client and IPv6-only and
//! dual-stack servers, all in network namespaces (see
//! `coexist_tests::lab::topology`), and DNS through UDP frontends to BIND 9
//! on the IPv6-only servers (issue 14). The matrix runs once; every row is
//! asserted on its verdict and on its key figures, and the HTML report is
//! written (under `target/tmp/lab-report/`) and checked.

use std::path::PathBuf;
use std::time::Duration;

use coexist_support::wait_until;
use coexist_tests::lab::clock::now_ns;
use coexist_tests::lab::timeline::Mark;
use coexist_tests::lab::vip_watch::VipWatch;
use coexist_tests::lab::{self, Report};
use coexist_tests::netns::{enter_or_skip, Lab};
use serde_json::Value;

fn figure<'a>(report: &'a Report, id: u8, key: &str) -> &'a Value {
    report
        .row(id)
        .and_then(|r| r.figures.get(key))
        .unwrap_or_else(|| panic!("row {id} has no figure {key:?}\n{}", report.table()))
}

#[test]
fn lab_matrix_rows_1_to_11() {
    if !enter_or_skip("lab_matrix_rows_1_to_11") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("coexist-lab-test-")
        .tempdir()
        .expect("temp dir");
    let report = lab::run(&lab::Options {
        advert: Duration::from_millis(100),
        programs: lab::Programs {
            coexist: coexist_tests::daemon::coexist_binary(),
            helper: PathBuf::from(env!("CARGO_BIN_EXE_coexist-lab")),
        },
        dir: dir.path().to_owned(),
        progress: true,
    })
    .expect("the lab runs");
    let table = report.table();
    println!("{table}");
    let failed: Vec<u8> = report
        .rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| r.id)
        .collect();
    if !failed.is_empty() {
        let kept = dir.keep();
        panic!(
            "rows {failed:?} failed (logs in {}):\n{table}",
            kept.display()
        );
    }
    assert_eq!(
        report.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<u8>>(),
        "every row of the matrix, in order"
    );

    // Row 1: every IPv6-only server answered the IPv6 client.
    let web6 = figure(&report, 1, "IPv6-only servers (VIP6:80)");
    for server in ["srv1", "srv2", "srv3"] {
        assert!(web6[server].as_u64() > Some(0), "{server}: {web6}");
    }
    // Row 2: every byte the IPv4 client sent came back through IPv6.
    let connections = figure(&report, 2, "connections").as_u64().unwrap_or(0);
    assert!(connections > 0);
    assert_eq!(
        figure(&report, 2, "bytes verified").as_u64(),
        Some(connections * lab::load::BYTES as u64)
    );
    // Row 4: node2 took over both families, within the bound, and the
    // restarted daemon removed both stale addresses.
    let bound = figure(&report, 4, "takeover bound_ms")
        .as_f64()
        .unwrap_or(0.0);
    for key in ["node1 dies: takeover_ms", "daemon killed: takeover_ms"] {
        for family in ["IPv4", "IPv6"] {
            let t = figure(&report, 4, key)[family].as_f64();
            assert!(
                t.is_some_and(|t| t <= bound),
                "{key} {family}: {t:?} > {bound}"
            );
        }
    }
    assert_eq!(
        figure(&report, 4, "removed by the restarted daemon first"),
        &serde_json::json!([lab::topology::VIP4, lab::topology::VIP6])
    );
    // Rows 6 and 8: no client connection failed.
    assert_eq!(figure(&report, 6, "failed, opened after the kill"), 0);
    assert_eq!(figure(&report, 8, "failed"), 0);
    // Row 7: node1's priority dropped by the track weight.
    assert_eq!(
        figure(&report, 7, "node1 while its servers are unreachable"),
        "IPv4 backup (90), IPv6 backup (90)"
    );
    // Row 9: dig from each single-family client got an IPv6-only BIND's
    // answer, and each DNS server answered queries of both families.
    let dig = figure(&report, 9, "dig");
    for family in ["IPv4", "IPv6"] {
        let answer = dig[family].as_str().unwrap_or("");
        assert!(
            lab::topology::WEB_SERVERS.contains(&answer),
            "dig {family}: {dig}"
        );
    }
    for key in ["DNS servers (VIP4:53)", "DNS servers (VIP6:53)"] {
        let per = figure(&report, 9, key);
        for server in lab::topology::WEB_SERVERS {
            assert!(per[server].as_u64() > Some(0), "{key} {server}: {per}");
        }
    }
    // Row 10: no query failed once node1 knew the DNS server was dead.
    assert_eq!(figure(&report, 10, "failed, sent after the detection"), 0);
    // Row 11: node2 took over within the bound; the DNS gap was measured.
    let bound = figure(&report, 11, "takeover bound_ms")
        .as_f64()
        .unwrap_or(0.0);
    for family in ["IPv4", "IPv6"] {
        let t = figure(&report, 11, "takeover_ms")[family].as_f64();
        assert!(t.is_some_and(|t| t <= bound), "takeover {family}: {t:?}");
        assert!(figure(&report, 11, "DNS gap_ms")[family].as_f64().is_some());
    }

    // The HTML report (`coexist-lab --report`): a timeline per takeover,
    // a lane per family, each with what the lab did at zero and the VIP
    // move seen; the clients' failed connections while node1 was dead
    // are drawn; the page refers to nothing outside itself.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-report");
    let page = lab::html::write(&report, &out).expect("the report is written");
    println!("lab report: {}", page.display());
    let html = std::fs::read_to_string(&page).expect("the page");
    assert_eq!(lab::html::external_references(&html), Vec::<String>::new());
    let drawn: Vec<(u8, &str)> = (report.rows.iter())
        .flat_map(|r| r.timelines.iter().map(move |t| (r.id, t.title.as_str())))
        .collect();
    assert_eq!(
        drawn,
        [
            (4, "node1 dies"),
            (4, "node1's daemon SIGKILLed, then restarted"),
            (5, "node1 back: preemption"),
            (7, "node1 loses its servers, then gets them back"),
        ]
    );
    for (row, timeline) in
        (report.rows.iter()).flat_map(|r| r.timelines.iter().map(move |t| (r.id, t)))
    {
        let names: Vec<&str> = timeline.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["IPv4", "IPv6"], "row {row}");
        for lane in &timeline.lanes {
            let what = format!("row {row}, {}, {}", timeline.title, lane.name);
            assert!(lane.total_succeeded() > 0, "{what}");
            assert_eq!(
                lane.events.first().and_then(|e| e.at_ms),
                Some(0.0),
                "{what}"
            );
            assert!(
                (lane.events.iter()).any(|e| e.mark == Mark::VipMoved && e.at_ms.is_some()),
                "{what}: {:?}",
                lane.events
            );
            let svg = out.join(lab::html::svg_name(row, timeline));
            assert!(svg.is_file(), "{}", svg.display());
        }
        if timeline.title == "node1 dies" {
            assert!(timeline.lanes.iter().all(|l| l.total_failed() > 0));
        }
    }
}

/// The lab and the VRRP tests time takeovers by `ip monitor address`
/// ([`VipWatch`]) as well as by polling, taking the earlier; a monitor that
/// heard nothing would leave them on the slow polls without a word. Here an
/// address of each family added in a namespace is heard.
#[test]
fn vip_watch_hears_each_family_added_in_a_namespace() {
    if !enter_or_skip("vip_watch_hears_each_family_added_in_a_namespace") {
        return;
    }
    let mut lab = Lab::new("vipwatch");
    let switch = lab.switch("sw");
    let node = lab.ns("n");
    lab.plug(&node, "eth0", &switch, "p1");
    let watch = VipWatch::start(&node).expect("ip monitor starts");
    for (vip, cidr) in [("10.99.0.10", "10.99.0.10/24"), ("fd99::10", "fd99::10/64")] {
        // The monitor subscribes a moment after it starts: an addition it
        // missed is taken back and made again.
        let heard = (0..50).find_map(|_| {
            let from = now_ns();
            lab.addr(&node, "eth0", cidr);
            let heard = wait_until(Duration::from_secs(1), Duration::from_millis(5), || {
                watch.added_ms(vip, from).is_some()
            });
            if heard.is_none() {
                lab.ip(&node, &["addr", "del", cidr, "dev", "eth0"]);
            }
            heard
        });
        assert!(heard.is_some(), "ip monitor never heard {vip} added");
    }
}
