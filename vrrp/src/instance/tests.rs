//! One test per state-machine rule, each named after its RFC section
//! (RFC 9568 for VRRPv3, RFC 3768 for VRRPv2). Time is virtual: `t0` plus
//! durations, never the real clock.

use super::*;
use crate::config::Track;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const ME: &str = "192.0.2.2";
const LOWER: &str = "192.0.2.1";
const HIGHER: &str = "192.0.2.3";
const VIP: &str = "192.0.2.10";

fn config(priority: u8) -> Config {
    let mut c = Config::new(51, ip(ME), vec![VirtualAddress::new(ip(VIP), 24)]);
    c.priority = priority;
    c
}

fn v2_config(priority: u8) -> Config {
    let mut c = config(priority);
    c.version = Version::V2;
    c
}

fn advert(priority: u8, interval: Duration) -> Packet {
    Packet::advert(Version::V3, 51, priority, interval, vec![ip(VIP)]).unwrap()
}

fn v2_advert(priority: u8) -> Packet {
    Packet::advert(
        Version::V2,
        51,
        priority,
        Duration::from_secs(1),
        vec![ip(VIP)],
    )
    .unwrap()
}

fn drain(vr: &mut Instance) -> Vec<Action> {
    vr.drain_actions().collect()
}

fn started(config: Config, t0: Instant) -> Instance {
    let mut vr = Instance::new(config).unwrap();
    vr.start(t0);
    drain(&mut vr);
    vr
}

/// A started backup that has become master through Master_Down_Interval.
fn master(config: Config, t0: Instant) -> (Instance, Instant) {
    let mut vr = started(config, t0);
    let at = vr.poll_timeout().unwrap();
    vr.handle_timeout(at);
    assert_eq!(vr.state(), State::Master);
    drain(&mut vr);
    (vr, at)
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert(p) => Some(p.priority),
            _ => None,
        })
        .collect()
}

/// RFC 9568 §6.4.1: the address owner (priority 255) goes straight to
/// Master: it advertises, takes its addresses and announces them.
#[test]
fn rfc9568_6_4_1_owner_starts_as_master() {
    let t0 = Instant::now();
    let mut vr = Instance::new(config(255)).unwrap();
    vr.start(t0);
    let actions = drain(&mut vr);
    assert_eq!(vr.state(), State::Master);
    assert_eq!(
        actions[0],
        Action::StateChanged {
            from: State::Initialize,
            to: State::Master,
            reason: TransitionReason::AddressOwner
        }
    );
    assert_eq!(sent_priorities(&actions), vec![255]);
    assert!(
        actions.contains(&Action::AddAddresses(vec![VirtualAddress::new(
            ip(VIP),
            24
        )]))
    );
    assert!(actions.contains(&Action::Announce(vec![ip(VIP)])));
    assert_eq!(vr.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(vr.master(), Some(ip(ME)));
}

/// RFC 9568 §6.4.1: any other router starts as Backup with
/// Master_Down_Timer = Master_Down_Interval, and holds no address.
#[test]
fn rfc9568_6_4_1_non_owner_starts_as_backup() {
    let t0 = Instant::now();
    let mut vr = Instance::new(config(100)).unwrap();
    vr.start(t0);
    let actions = drain(&mut vr);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(sent_priorities(&actions), Vec::<u8>::new());
    assert!(
        actions.contains(&Action::RemoveAddresses(vec![VirtualAddress::new(
            ip(VIP),
            24
        )]))
    );
    assert_eq!(vr.poll_timeout(), Some(t0 + vr.master_down_interval()));
    assert_eq!(vr.master(), None);
}

/// RFC 9568 §6.1: Skew_Time = ((256 − Priority) × Master_Adver_Interval) /
/// 256 and Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
#[test]
fn rfc9568_6_1_skew_time_and_master_down_interval() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    assert_eq!(vr.skew_time(), Duration::from_secs(1) * 156 / 256);
    assert_eq!(
        vr.master_down_interval(),
        Duration::from_secs(3) + Duration::from_secs(1) * 156 / 256
    );
    vr.handle_advert(t0, ip(HIGHER), &advert(200, ms(100)))
        .unwrap();
    assert_eq!(vr.skew_time(), ms(100) * 156 / 256);
    assert_eq!(vr.master_down_interval(), ms(300) + ms(100) * 156 / 256);
    // Higher priority, shorter skew: it takes over first.
    let high = started(config(254), t0);
    assert_eq!(high.skew_time(), Duration::from_secs(1) * 2 / 256);
}

/// RFC 3768 §6.1: in VRRPv2 Skew_Time = (256 − Priority) / 256 seconds,
/// whatever the interval.
#[test]
fn rfc3768_6_1_v2_skew_time_in_seconds() {
    let t0 = Instant::now();
    let mut c = v2_config(100);
    c.advert_interval = Duration::from_secs(2);
    let vr = started(c, t0);
    assert_eq!(vr.skew_time(), Duration::from_secs(1) * 156 / 256);
    assert_eq!(
        vr.master_down_interval(),
        Duration::from_secs(6) + Duration::from_secs(1) * 156 / 256
    );
}

/// RFC 9568 §6.4.2: a backup adopts the master's advertised interval
/// (Master_Adver_Interval) and recomputes its timers from it.
#[test]
fn rfc9568_6_4_2_backup_adopts_master_interval() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    let now = t0 + ms(50);
    vr.handle_advert(now, ip(HIGHER), &advert(200, ms(200)))
        .unwrap();
    assert_eq!(vr.advert_interval(), ms(200));
    assert_eq!(vr.poll_timeout(), Some(now + ms(600) + ms(200) * 156 / 256));
    assert_eq!(vr.master(), Some(ip(HIGHER)));
}

/// RFC 3768 §7.1: a VRRPv2 advert whose interval differs from the
/// configured one is discarded and does not reset the timer.
#[test]
fn rfc3768_7_1_v2_interval_mismatch_discarded() {
    let t0 = Instant::now();
    let mut vr = started(v2_config(100), t0);
    let before = vr.poll_timeout();
    let mut p = v2_advert(200);
    p.max_advert_int = 2;
    let e = vr.handle_advert(t0 + ms(10), ip(HIGHER), &p).unwrap_err();
    assert_eq!(e.reason(), "interval_mismatch");
    assert_eq!(vr.poll_timeout(), before);
    vr.handle_advert(t0 + ms(10), ip(HIGHER), &v2_advert(200))
        .unwrap();
    assert_ne!(vr.poll_timeout(), before);
}

/// RFC 9568 §6.4.2: when Master_Down_Timer fires the backup becomes
/// master: advertise, add addresses, announce them.
#[test]
fn rfc9568_6_4_2_master_down_timer_expiry_makes_master() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    let at = vr.poll_timeout().unwrap();
    vr.handle_timeout(at - ms(1));
    assert_eq!(vr.state(), State::Backup, "early wake-ups change nothing");
    assert!(drain(&mut vr).is_empty());
    vr.handle_timeout(at);
    let actions = drain(&mut vr);
    assert_eq!(vr.state(), State::Master);
    assert!(matches!(
        actions[0],
        Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: TransitionReason::MasterDown { .. }
        }
    ));
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert!(matches!(actions[2], Action::AddAddresses(_)));
    assert!(matches!(actions[3], Action::Announce(_)));
    assert!(vr
        .last_transition()
        .unwrap()
        .reason
        .to_string()
        .starts_with("master down interval expired"));
}

/// RFC 9568 §6.4.2: an advert of priority 0 sets Master_Down_Timer to
/// Skew_Time: the master is leaving and backups take over at once, the
/// highest priority first.
#[test]
fn rfc9568_6_4_2_priority_zero_takes_over_after_skew_time() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    vr.handle_advert(t0, ip(HIGHER), &advert(200, ms(100)))
        .unwrap();
    let now = t0 + ms(30);
    vr.handle_advert(now, ip(HIGHER), &advert(0, ms(100)))
        .unwrap();
    assert_eq!(vr.poll_timeout(), Some(now + vr.skew_time()));
    assert_eq!(vr.master(), None);
    vr.handle_timeout(now + vr.skew_time());
    assert_eq!(vr.state(), State::Master);
    assert_eq!(
        vr.last_transition().unwrap().reason,
        TransitionReason::MasterReleased { from: ip(HIGHER) }
    );
}

/// RFC 9568 §6.4.2: priority 0 is honoured with preemption off too.
#[test]
fn rfc9568_6_4_2_priority_zero_honoured_without_preempt() {
    let t0 = Instant::now();
    let mut c = config(100);
    c.preempt = false;
    let mut vr = started(c, t0);
    vr.handle_advert(t0, ip(HIGHER), &advert(0, ms(100)))
        .unwrap();
    assert_eq!(vr.poll_timeout(), Some(t0 + vr.skew_time()));
}

/// RFC 9568 §6.4.2: with Preempt_Mode, an advert of lower priority is
/// discarded, so the Master_Down_Timer runs out and the backup preempts.
#[test]
fn rfc9568_6_4_2_preempt_ignores_lower_priority_master() {
    let t0 = Instant::now();
    let mut vr = started(config(200), t0);
    let deadline = vr.poll_timeout().unwrap();
    for i in 0..3 {
        vr.handle_advert(
            t0 + Duration::from_secs(i),
            ip(HIGHER),
            &advert(100, Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(
            vr.poll_timeout(),
            Some(deadline),
            "lower advert must not reset the timer"
        );
    }
    vr.handle_timeout(deadline);
    assert_eq!(vr.state(), State::Master);
    let reason = vr.last_transition().unwrap().reason;
    assert_eq!(
        reason,
        TransitionReason::Preempted {
            priority: 100,
            from: ip(HIGHER)
        }
    );
    assert_eq!(
        reason.to_string(),
        "preempted lower priority 100 from 192.0.2.3"
    );
}

/// RFC 9568 §6.4.2: with Preempt_Mode false, any advert resets the timer:
/// a lower-priority master keeps its role.
#[test]
fn rfc9568_6_4_2_preempt_off_keeps_lower_priority_master() {
    let t0 = Instant::now();
    let mut c = config(200);
    c.preempt = false;
    let mut vr = started(c, t0);
    for i in 1..10 {
        let now = t0 + Duration::from_secs(i);
        vr.handle_advert(now, ip(LOWER), &advert(100, Duration::from_secs(1)))
            .unwrap();
        assert_eq!(vr.poll_timeout(), Some(now + vr.master_down_interval()));
    }
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.master(), Some(ip(LOWER)));
}

/// RFC 9568 §6.4.2: an advert of higher or equal priority resets the timer
/// (equal priority is never preempted from Backup).
#[test]
fn rfc9568_6_4_2_equal_or_higher_priority_resets_timer() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    for (i, prio) in [(1u64, 100u8), (2, 150)] {
        let now = t0 + Duration::from_secs(i);
        vr.handle_advert(now, ip(LOWER), &advert(prio, Duration::from_secs(1)))
            .unwrap();
        assert_eq!(vr.poll_timeout(), Some(now + vr.master_down_interval()));
    }
}

/// preempt_delay (keepalived's extension, not in the RFCs): a backup keeps
/// accepting a lower-priority master until it has heard it for the delay,
/// then preempts as RFC 9568 §6.4.2 says.
#[test]
fn preempt_delay_postpones_preemption() {
    let t0 = Instant::now();
    let mut c = config(200);
    c.preempt_delay = Duration::from_secs(5);
    let mut vr = started(c, t0);
    let second = Duration::from_secs(1);
    let mut now = t0;
    for _ in 0..5 {
        vr.handle_advert(now, ip(LOWER), &advert(100, second))
            .unwrap();
        assert_eq!(
            vr.poll_timeout(),
            Some(now + vr.master_down_interval()),
            "accepted during the delay"
        );
        now += second;
    }
    // 5 s after the first lower advert: from now on it is ignored.
    let deadline = vr.poll_timeout().unwrap();
    vr.handle_advert(now, ip(LOWER), &advert(100, second))
        .unwrap();
    assert_eq!(vr.poll_timeout(), Some(deadline));
    vr.handle_timeout(deadline);
    assert_eq!(vr.state(), State::Master);
}

/// RFC 9568 §6.4.3: a master advertises every Advertisement_Interval.
#[test]
fn rfc9568_6_4_3_master_advertises_every_interval() {
    let t0 = Instant::now();
    let mut c = config(255);
    c.advert_interval = ms(100);
    let mut vr = started(c, t0);
    for i in 1..=5u32 {
        let at = vr.poll_timeout().unwrap();
        assert_eq!(at, t0 + ms(100) * i);
        vr.handle_timeout(at);
        assert_eq!(sent_priorities(&drain(&mut vr)), vec![255]);
    }
}

/// RFC 9568 §6.4.3: a master hearing a higher priority becomes backup,
/// adopts the sender's interval and removes its addresses.
#[test]
fn rfc9568_6_4_3_master_steps_down_for_higher_priority() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    vr.handle_advert(at, ip(LOWER), &advert(200, ms(300)))
        .unwrap();
    let actions = drain(&mut vr);
    assert_eq!(vr.state(), State::Backup);
    let reason = TransitionReason::HigherPriority {
        priority: 200,
        from: ip(LOWER),
    };
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason
            },
            Action::RemoveAddresses(vec![VirtualAddress::new(ip(VIP), 24)]),
        ]
    );
    assert_eq!(reason.to_string(), "higher priority 200 from 192.0.2.1");
    assert_eq!(vr.advert_interval(), ms(300));
    assert_eq!(vr.poll_timeout(), Some(at + vr.master_down_interval()));
    assert_eq!(vr.master(), Some(ip(LOWER)));
}

/// RFC 9568 §6.4.3: on equal priority the higher primary address wins.
#[test]
fn rfc9568_6_4_3_equal_priority_higher_address_wins() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    vr.handle_advert(at, ip(LOWER), &advert(100, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(vr.state(), State::Master, "lower address loses the tie");
    vr.handle_advert(at, ip(HIGHER), &advert(100, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(
        vr.last_transition().unwrap().reason,
        TransitionReason::HigherAddress {
            priority: 100,
            from: ip(HIGHER)
        }
    );
    // IPv6 compares addresses numerically too.
    let mut c6 = Config::new(
        51,
        ip("fe80::2"),
        vec![VirtualAddress::new(ip("2001:db8::10"), 64)],
    );
    c6.priority = 100;
    let (mut vr6, at) = master(c6, t0);
    let p6 = Packet::advert(
        Version::V3,
        51,
        100,
        Duration::from_secs(1),
        vec![ip("2001:db8::10")],
    )
    .unwrap();
    vr6.handle_advert(at, ip("fe80::1:0"), &p6).unwrap();
    assert_eq!(vr6.state(), State::Backup);
}

/// RFC 9568 §6.4.3: a master hearing a lower priority advertises at once,
/// so the other master steps down without waiting an interval.
#[test]
fn rfc9568_6_4_3_master_readvertises_on_lower_priority() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(150), t0);
    let now = at + ms(300);
    vr.handle_advert(now, ip(HIGHER), &advert(100, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(sent_priorities(&drain(&mut vr)), vec![150]);
    assert_eq!(vr.poll_timeout(), Some(now + Duration::from_secs(1)));
    assert_eq!(vr.state(), State::Master);
}

/// RFC 9568 §6.4.3 with keepalived's `vrrp_garp_lower_prio_repeat`: a
/// lower-priority master held the addresses (a split brain after a stall,
/// or a peer started without hearing us) and announced them, so the
/// neighbours may send to it. Input: a master hears a lower-priority
/// advert, then another within the interval. Output: the first is
/// answered by an advert and a new announcement of the virtual address;
/// the second by nothing (the same limit as the advert).
#[test]
fn rfc9568_6_4_3_master_announces_again_when_a_lower_priority_master_is_heard() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(150), t0);
    let lower = advert(100, Duration::from_secs(1));
    vr.handle_advert(at + ms(300), ip(HIGHER), &lower).unwrap();
    let actions = drain(&mut vr);
    assert_eq!(sent_priorities(&actions), vec![150]);
    assert!(
        actions.contains(&Action::Announce(vec![ip(VIP)])),
        "{actions:?}"
    );
    vr.handle_advert(at + ms(400), ip(HIGHER), &lower).unwrap();
    assert!(drain(&mut vr).is_empty());
}

/// RFC 9568 §6.4.3 answers every lower-priority advert with an advert;
/// answered one for one, a flood of them makes the master a reflector.
/// Input: a master (interval 100 ms) hears 1,661 lower-priority adverts
/// evenly over 5 s, running its own timer meanwhile. Output: the first
/// (at once after becoming master) is answered at once, the rest wait for
/// the periodic adverts: 50 adverts in all (1 answer, which restarts the
/// Adver_Timer, + 49 periodic), not ~1,700, and 1,660 counted suppressed.
#[test]
fn rfc9568_6_4_3_answers_to_a_lower_priority_flood_are_rate_limited() {
    let t0 = Instant::now();
    let mut c = config(150);
    c.advert_interval = ms(100);
    let (mut vr, start) = master(c, t0);
    let flood = 1_661u32;
    let span = Duration::from_secs(5);
    let mut sent = 0;
    for i in 0..flood {
        let now = start + span * i / flood;
        while let Some(due) = vr.poll_timeout().filter(|&due| due <= now) {
            vr.handle_timeout(due);
            sent += sent_priorities(&drain(&mut vr)).len();
        }
        vr.handle_advert(now, ip(HIGHER), &advert(100, ms(100)))
            .unwrap();
        sent += sent_priorities(&drain(&mut vr)).len();
    }
    assert_eq!(vr.state(), State::Master);
    assert_eq!(sent, 50, "adverts sent while 1,661 lower-priority arrived");
    assert_eq!(vr.adverts_suppressed(), 1_660);
}

/// RFC 9568 §6.4.3, with the limit above: a lower-priority advert (or a
/// release) after a quiet advertisement interval is answered at once
/// again; one within the interval of the previous is not, and the
/// Adver_Timer keeps its schedule.
#[test]
fn rfc9568_6_4_3_answer_after_a_quiet_interval() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(150), t0);
    let lower = advert(100, Duration::from_secs(1));
    vr.handle_advert(at + ms(100), ip(HIGHER), &lower).unwrap();
    assert_eq!(sent_priorities(&drain(&mut vr)), vec![150]);
    let timer = vr.poll_timeout();
    vr.handle_advert(at + ms(600), ip(HIGHER), &advert(0, Duration::from_secs(1)))
        .unwrap();
    assert!(
        drain(&mut vr).is_empty(),
        "within 1 s of the last: no answer"
    );
    assert_eq!(vr.poll_timeout(), timer);
    assert_eq!(vr.adverts_suppressed(), 1);
    // 1 s after the last answerable packet (not after the last answer).
    vr.handle_advert(at + ms(1600), ip(HIGHER), &lower).unwrap();
    assert_eq!(sent_priorities(&drain(&mut vr)), vec![150]);
    assert_eq!(vr.poll_timeout(), Some(at + ms(2600)));
}

/// RFC 3768 §6.4.3: a VRRPv2 master simply discards a lower-priority advert.
#[test]
fn rfc3768_6_4_3_v2_master_discards_lower_priority() {
    let t0 = Instant::now();
    let (mut vr, at) = master(v2_config(150), t0);
    vr.handle_advert(at + ms(300), ip(HIGHER), &v2_advert(100))
        .unwrap();
    assert!(drain(&mut vr).is_empty());
    assert_eq!(vr.poll_timeout(), Some(at + Duration::from_secs(1)));
}

/// RFC 9568 §6.4.3: a master receiving priority 0 sends an advert and
/// resets its Adver_Timer.
#[test]
fn rfc9568_6_4_3_master_answers_priority_zero() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    let now = at + ms(500);
    vr.handle_advert(now, ip(HIGHER), &advert(0, Duration::from_secs(1)))
        .unwrap();
    assert_eq!(sent_priorities(&drain(&mut vr)), vec![100]);
    assert_eq!(vr.poll_timeout(), Some(now + Duration::from_secs(1)));
}

/// RFC 9568 §6.4.3: on Shutdown a master sends an advert with priority 0,
/// then goes to Initialize (and releases its addresses).
#[test]
fn rfc9568_6_4_3_master_shutdown_sends_priority_zero() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    vr.shutdown(at);
    let actions = drain(&mut vr);
    assert_eq!(
        actions,
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: TransitionReason::Shutdown
            },
            Action::SendAdvert(advert(0, Duration::from_secs(1))),
            Action::RemoveAddresses(vec![VirtualAddress::new(ip(VIP), 24)]),
        ]
    );
    assert_eq!(vr.poll_timeout(), None);
    assert_eq!(vr.state(), State::Initialize);
}

/// RFC 9568 §6.4.2: a backup's Shutdown cancels its timer and goes to
/// Initialize without sending anything.
#[test]
fn rfc9568_6_4_2_backup_shutdown_is_silent() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    vr.shutdown(t0);
    assert_eq!(
        drain(&mut vr),
        vec![Action::StateChanged {
            from: State::Backup,
            to: State::Initialize,
            reason: TransitionReason::Shutdown
        }]
    );
    assert_eq!(vr.poll_timeout(), None);
    assert_eq!(
        vr.handle_advert(t0, ip(HIGHER), &advert(200, ms(100))),
        Err(Discard::NotRunning)
    );
}

/// RFC 9568 §7.1: the address owner does not process adverts.
#[test]
fn rfc9568_7_1_owner_discards_adverts() {
    let t0 = Instant::now();
    let mut vr = started(config(255), t0);
    let e = vr
        .handle_advert(t0, ip(HIGHER), &advert(255, ms(100)))
        .unwrap_err();
    assert_eq!(e, Discard::LocalOwner);
    assert_eq!(vr.state(), State::Master);
}

/// RFC 9568 §7.1: the VRID must be the instance's.
#[test]
fn rfc9568_7_1_vrid_must_match() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    let mut p = advert(200, ms(100));
    p.vrid = 52;
    assert_eq!(
        vr.handle_advert(t0, ip(HIGHER), &p).unwrap_err().reason(),
        "vrid"
    );
}

/// RFC 9568 §7.1 (version) and §5.1 (separate families): an advert of the
/// other version or family is not for this instance; nor is our own.
#[test]
fn rfc9568_7_1_version_family_and_own_adverts_discarded() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    assert_eq!(
        vr.handle_advert(t0, ip(HIGHER), &v2_advert(200))
            .unwrap_err()
            .reason(),
        "version_mismatch"
    );
    let p6 = Packet::advert(Version::V3, 51, 200, ms(100), vec![ip("2001:db8::10")]).unwrap();
    assert_eq!(
        vr.handle_advert(t0, ip("fe80::9"), &p6)
            .unwrap_err()
            .reason(),
        "family_mismatch"
    );
    assert_eq!(
        vr.handle_advert(t0, ip(ME), &advert(200, ms(100)))
            .unwrap_err()
            .reason(),
        "own_advert"
    );
}

/// RFC 3768 §7.1: a VRRPv2 advert listing other addresses is dropped
/// unless it comes from the owner (priority 255).
#[test]
fn rfc3768_7_1_v2_address_mismatch_dropped_unless_owner() {
    let t0 = Instant::now();
    let mut vr = started(v2_config(100), t0);
    let mut p = v2_advert(200);
    p.addresses = vec![ip("192.0.2.99")];
    assert_eq!(
        vr.handle_advert(t0, ip(HIGHER), &p).unwrap_err().reason(),
        "address_mismatch"
    );
    p.priority = 255;
    assert_eq!(vr.handle_advert(t0, ip(HIGHER), &p), Ok(()));
}

/// RFC 9568 §7.1: in VRRPv3 an address mismatch is logged, not dropped.
#[test]
fn rfc9568_7_1_v3_address_mismatch_is_processed() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    let mut p = advert(200, ms(100));
    p.addresses = vec![ip("192.0.2.99")];
    assert_eq!(vr.handle_advert(t0, ip(HIGHER), &p), Ok(()));
    assert_eq!(vr.master(), Some(ip(HIGHER)));
}

/// RFC 9568 §6.1 (Preempt_Mode note): the address owner always preempts,
/// whatever the flag; as owner it ignores the lower master's adverts.
#[test]
fn rfc9568_6_1_owner_preempts_even_with_preempt_off() {
    let t0 = Instant::now();
    let mut c = config(200);
    c.preempt = false;
    let mut vr = started(c.clone(), t0);
    vr.handle_advert(t0, ip(LOWER), &advert(100, Duration::from_secs(1)))
        .unwrap();
    c.priority = 255;
    vr.update_config(c).unwrap();
    assert_eq!(
        vr.state(),
        State::Backup,
        "a config change is no transition"
    );
    let deadline = vr.poll_timeout().unwrap();
    let _ = vr.handle_advert(
        t0 + ms(500),
        ip(LOWER),
        &advert(100, Duration::from_secs(1)),
    );
    assert_eq!(vr.poll_timeout(), Some(deadline));
    vr.handle_timeout(deadline);
    assert_eq!(vr.state(), State::Master);
}

/// RFC 9568 §6.4.3 (Accept_Mode, §6.1): a master accepts packets for the
/// virtual addresses only as owner or with Accept_Mode; a backup never.
#[test]
fn rfc9568_6_4_3_accept_mode() {
    let t0 = Instant::now();
    let (vr, _) = master(config(100), t0);
    assert!(!vr.accepts_virtual_traffic());
    let mut c = config(100);
    c.accept_mode = true;
    let backup = started(c.clone(), t0);
    assert!(!backup.accepts_virtual_traffic());
    let (vr, _) = master(c, t0);
    assert!(vr.accepts_virtual_traffic());
    let owner = started(config(255), t0);
    assert!(owner.accepts_virtual_traffic());
}

/// RFC 9568 §6.1: the owner is the router whose interface carries the
/// addresses; a tracked failure lowers its advertised priority but does
/// not make it a non-owner that would refuse traffic to its own addresses.
#[test]
fn rfc9568_6_1_owner_accepts_while_a_track_lowers_its_priority() {
    let t0 = Instant::now();
    let mut owner = started(tracked(255, &[("web", 60)]), t0);
    assert_eq!(owner.state(), State::Master);
    owner.set_track("web", false).unwrap();
    assert_eq!(owner.effective_priority(), 195);
    assert!(owner.accepts_virtual_traffic());
    assert!(owner.config().is_address_owner());
    let mut c = config(254);
    assert!(!c.master_accepts_virtual_traffic());
    c.accept_mode = true;
    assert!(c.master_accepts_virtual_traffic());
}

fn tracked(priority: u8, tracks: &[(&str, u8)]) -> Config {
    let mut c = config(priority);
    c.tracks = tracks
        .iter()
        .map(|(n, w)| Track {
            name: (*n).to_owned(),
            weight: *w,
        })
        .collect();
    c
}

/// Priority tracking: configured minus failed weights, never 0 nor 255.
#[test]
fn tracking_lowers_priority_within_1_to_254() {
    let mut vr = Instance::new(tracked(200, &[("web", 60), ("db", 100)])).unwrap();
    assert_eq!(vr.effective_priority(), 200);
    vr.set_track("web", false).unwrap();
    assert_eq!(vr.effective_priority(), 140);
    vr.set_track("db", false).unwrap();
    assert_eq!(vr.effective_priority(), 40);
    vr.set_track("web", true).unwrap();
    assert_eq!(vr.effective_priority(), 100);
    assert_eq!(
        vr.set_track("nope", false),
        Err(UnknownTrack("nope".into()))
    );

    let mut low = Instance::new(tracked(50, &[("web", 200)])).unwrap();
    low.set_track("web", false).unwrap();
    assert_eq!(low.effective_priority(), 1, "never 0: 0 means releasing");

    let mut owner = Instance::new(tracked(255, &[("web", 1)])).unwrap();
    assert_eq!(owner.effective_priority(), 255);
    owner.set_track("web", false).unwrap();
    assert_eq!(owner.effective_priority(), 254);
}

/// Priority tracking: a change goes out with the next advert, not at once,
/// and causes no transition by itself.
#[test]
fn tracking_change_takes_effect_at_next_advert() {
    let t0 = Instant::now();
    let (mut vr, _) = master(tracked(200, &[("web", 60)]), t0);
    vr.set_track("web", false).unwrap();
    assert!(drain(&mut vr).is_empty());
    assert_eq!(vr.state(), State::Master);
    vr.handle_timeout(vr.poll_timeout().unwrap());
    assert_eq!(sent_priorities(&drain(&mut vr)), vec![140]);
}

/// Priority tracking + RFC 9568 §6.4.2: when the master's effective
/// priority falls below a preempting backup's, the backup takes over.
#[test]
fn tracking_failure_triggers_preemption() {
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let (mut a, _) = master(tracked(200, &[("web", 60)]), t0);
    let mut b = started(
        Config {
            primary_address: ip(LOWER),
            ..config(150)
        },
        t0,
    );
    // b hears a's priority-200 adverts and stays backup.
    let mut now = t0;
    let relay = |a: &mut Instance, b: &mut Instance, now: Instant| {
        for action in a.drain_actions().collect::<Vec<_>>() {
            if let Action::SendAdvert(p) = action {
                let _ = b.handle_advert(now, ip(ME), &p);
            }
        }
    };
    for _ in 0..5 {
        now += second;
        a.handle_timeout(now);
        relay(&mut a, &mut b, now);
        b.handle_timeout(now);
    }
    assert_eq!(b.state(), State::Backup);
    a.set_track("web", false).unwrap();
    for _ in 0..5 {
        now += second;
        a.handle_timeout(now);
        relay(&mut a, &mut b, now);
        b.handle_timeout(now);
    }
    assert_eq!(b.state(), State::Master);
    assert!(matches!(
        b.last_transition().unwrap().reason,
        TransitionReason::Preempted { priority: 140, .. }
    ));
}

/// A reload changing the priority causes no transition; a master applies
/// an address change at once; the identity cannot change.
#[test]
fn config_update_without_spurious_transition() {
    let t0 = Instant::now();
    let (mut vr, _) = master(tracked(100, &[("web", 10)]), t0);
    vr.set_track("web", false).unwrap();
    let mut c = tracked(120, &[("web", 10)]);
    c.addresses.push(VirtualAddress::new(ip("192.0.2.11"), 24));
    vr.update_config(c.clone()).unwrap();
    assert_eq!(vr.state(), State::Master);
    assert_eq!(
        vr.effective_priority(),
        110,
        "failed track kept across reload"
    );
    assert_eq!(
        drain(&mut vr),
        vec![
            Action::AddAddresses(vec![VirtualAddress::new(ip("192.0.2.11"), 24)]),
            Action::Announce(vec![ip("192.0.2.11")]),
        ]
    );
    c.addresses.remove(0);
    vr.update_config(c.clone()).unwrap();
    assert_eq!(
        drain(&mut vr),
        vec![Action::RemoveAddresses(vec![VirtualAddress::new(
            ip(VIP),
            24
        )])]
    );
    let mut other = c.clone();
    other.vrid = 52;
    assert_eq!(
        vr.update_config(other),
        Err(ConfigError {
            setting: Setting::Vrid,
            problem: Problem::IdentityChanged
        })
    );
    let mut other = c.clone();
    other.version = Version::V2;
    assert_eq!(
        vr.update_config(other),
        Err(ConfigError {
            setting: Setting::Version,
            problem: Problem::IdentityChanged
        })
    );
}

fn setting(result: Result<Instance, ConfigError>) -> Setting {
    match result {
        Ok(_) => panic!("config should be refused"),
        Err(e) => e.setting,
    }
}

/// Config validation refuses what the protocol cannot carry.
#[test]
fn config_validation() {
    let mut c = config(100);
    c.vrid = 0;
    assert_eq!(setting(Instance::new(c)), Setting::Vrid);
    assert_eq!(setting(Instance::new(config(0))), Setting::Priority);
    let mut c = config(100);
    c.advert_interval = ms(15);
    assert!(matches!(
        Instance::new(c).unwrap_err().problem,
        Problem::Interval { .. }
    ));
    let mut c = v2_config(100);
    c.advert_interval = ms(500);
    assert!(matches!(
        Instance::new(c).unwrap_err().problem,
        Problem::Interval { .. }
    ));
    let mut c = config(100);
    c.addresses.push(VirtualAddress::new(ip("2001:db8::1"), 64));
    assert!(matches!(
        Instance::new(c).unwrap_err().problem,
        Problem::FamilyMismatch { .. }
    ));
    let mut c = config(100);
    c.addresses.clear();
    assert_eq!(Instance::new(c).unwrap_err().problem, Problem::NoAddresses);
    let mut c = Config::new(
        1,
        ip("fe80::1"),
        vec![VirtualAddress::new(ip("2001:db8::1"), 64)],
    );
    c.version = Version::V2;
    assert_eq!(Instance::new(c).unwrap_err().problem, Problem::V2Ipv6);
    let c = tracked(100, &[("a", 1), ("a", 2)]);
    assert_eq!(
        Instance::new(c).unwrap_err().problem,
        Problem::DuplicateTrack("a".into())
    );
}

/// The state names and gauge values used by /status and vrrp_state.
#[test]
fn state_labels() {
    assert_eq!(State::Master.as_str(), "master");
    assert_eq!(State::Backup.to_string(), "backup");
    assert_eq!(
        [State::Initialize, State::Backup, State::Master].map(State::code),
        [0, 1, 2]
    );
}

/// encode_advert uses the instance's primary address and checksum form,
/// and what it produces decodes back to the advert.
#[test]
fn encode_advert_roundtrips() {
    let t0 = Instant::now();
    let mut c = config(255);
    c.checksum_mode = crate::ChecksumMode::MessageOnly;
    let mut vr = Instance::new(c).unwrap();
    vr.start(t0);
    let Some(Action::SendAdvert(p)) = vr
        .drain_actions()
        .find(|a| matches!(a, Action::SendAdvert(_)))
    else {
        panic!("owner sends an advert at start");
    };
    let dst = p.family().multicast_group();
    let bytes = vr.encode_advert(&p, dst).unwrap();
    let d = crate::decode(&bytes, ip(ME), dst).unwrap();
    assert_eq!(d.packet, p);
    assert_eq!(d.checksum, crate::ChecksumMode::MessageOnly);
}

// ---- interfaces that come and go -------------------------------------

/// RFC 9568 §6.4.3 (Shutdown, without the advert the dead link cannot
/// carry): a master whose interface goes down goes to Initialize and
/// releases its addresses at once, and keeps no timer.
#[test]
fn rfc9568_6_4_3_master_interface_down_releases_addresses() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    vr.interface_down(at);
    assert_eq!(
        drain(&mut vr),
        vec![
            Action::StateChanged {
                from: State::Master,
                to: State::Initialize,
                reason: TransitionReason::InterfaceDown
            },
            Action::RemoveAddresses(vec![VirtualAddress::new(ip(VIP), 24)]),
        ]
    );
    assert_eq!(vr.poll_timeout(), None);
    assert_eq!(vr.master(), None);
    assert!(vr.waiting_for_interface());
    // Nothing happens on the dead link, however long it stays down.
    vr.handle_timeout(at + Duration::from_secs(60));
    assert!(drain(&mut vr).is_empty());
    assert_eq!(
        vr.handle_advert(at, ip(HIGHER), &advert(200, ms(100))),
        Err(Discard::NotRunning)
    );
}

/// RFC 9568 §6.4.2 (Shutdown): a backup whose interface goes down stops
/// its Master_Down_Timer, so it never becomes master of a link it cannot
/// hear; it sends nothing and holds nothing.
#[test]
fn rfc9568_6_4_2_backup_interface_down_stops_its_timer() {
    let t0 = Instant::now();
    let mut vr = started(config(100), t0);
    vr.interface_down(t0);
    assert_eq!(
        drain(&mut vr),
        vec![Action::StateChanged {
            from: State::Backup,
            to: State::Initialize,
            reason: TransitionReason::InterfaceDown
        }]
    );
    assert_eq!(vr.poll_timeout(), None);
    vr.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(vr.state(), State::Initialize);
}

/// RFC 9568 §6.4.1 (Startup): when the interface comes back a started
/// instance starts again: Backup with a fresh Master_Down_Timer (clearing
/// leftovers), or Master at once as the address owner.
#[test]
fn rfc9568_6_4_1_interface_up_is_a_startup_event() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    vr.interface_down(at);
    drain(&mut vr);
    let up = at + Duration::from_secs(5);
    vr.interface_up(up);
    assert_eq!(
        drain(&mut vr),
        vec![
            Action::StateChanged {
                from: State::Initialize,
                to: State::Backup,
                reason: TransitionReason::InterfaceUp
            },
            Action::RemoveAddresses(vec![VirtualAddress::new(ip(VIP), 24)]),
        ]
    );
    assert_eq!(vr.poll_timeout(), Some(up + vr.master_down_interval()));
    assert!(!vr.waiting_for_interface());
    // Repeated "up" notifications change nothing.
    vr.interface_up(up);
    assert!(drain(&mut vr).is_empty());

    let mut owner = started(config(255), t0);
    owner.interface_down(t0);
    drain(&mut owner);
    owner.interface_up(up);
    let actions = drain(&mut owner);
    assert_eq!(owner.state(), State::Master);
    assert_eq!(sent_priorities(&actions), vec![255]);
}

/// RFC 9568 §6.4.1: the Startup event needs an interface to start on. An
/// instance started while its interface is missing or down waits in
/// Initialize and starts when the interface comes up; one shut down in
/// the meantime does not.
#[test]
fn rfc9568_6_4_1_start_waits_for_the_interface() {
    let t0 = Instant::now();
    let mut vr = Instance::new(config(100)).unwrap();
    vr.interface_down(t0);
    vr.start(t0);
    assert!(drain(&mut vr).is_empty());
    assert_eq!(vr.state(), State::Initialize);
    assert!(vr.waiting_for_interface());
    vr.interface_up(t0 + ms(300));
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(
        vr.last_transition().map(|t| t.reason),
        Some(TransitionReason::InterfaceUp)
    );

    let mut stopped = Instance::new(config(100)).unwrap();
    stopped.interface_down(t0);
    stopped.start(t0);
    stopped.shutdown(t0);
    stopped.interface_up(t0 + ms(300));
    assert_eq!(stopped.state(), State::Initialize);
    assert!(drain(&mut stopped).is_empty());
    assert!(!stopped.waiting_for_interface());
}

/// RFC 9568 §5.1.1.1, §5.1.2.1: adverts come from the interface's primary
/// address; when it changes, the next advert comes from the new one, our
/// own adverts from it are recognised, and no transition happens.
#[test]
fn rfc9568_5_1_1_1_primary_address_change_is_followed() {
    let t0 = Instant::now();
    let (mut vr, at) = master(config(100), t0);
    let new = ip("192.0.2.5");
    vr.set_primary_address(new);
    assert_eq!(vr.config().primary_address, new);
    assert_eq!(vr.master(), Some(new));
    assert_eq!(vr.state(), State::Master);
    let group = ip("224.0.0.18");
    let p = advert(100, Duration::from_secs(1));
    let bytes = vr.encode_advert(&p, group).unwrap();
    let decoded =
        crate::packet::decode(&bytes, new, group).expect("checksummed from the new address");
    assert_eq!(decoded.packet.priority, 100);
    assert_eq!(vr.handle_advert(at, new, &p), Err(Discard::OwnAdvert(new)));
    // An address of the other family is not a primary address for it.
    vr.set_primary_address(ip("fe80::1"));
    assert_eq!(vr.config().primary_address, new);
    assert!(drain(&mut vr).is_empty());
}
