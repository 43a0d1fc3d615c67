#!/bin/sh
# Capture real keepalived and FRR VRRP adverts in a private network
# namespace (deleted afterwards, daemons stopped by PID). Run as root:
#   sh capture.sh OUTDIR      # writes OUTDIR/vrrp.pcap
# then: python3 extract.py OUTDIR/vrrp.pcap . '21=keepalived-v2-ipv4.txt@keepalived,...'
# Needs keepalived, frr (zebra + vrrpd), tcpdump.
set -eu
OUT=$(cd "${1:?usage: capture.sh OUTDIR}" && pwd)
NS=cx-vrrp-core-cap
WORK=$(mktemp -d)
PIDS=""
cleanup() {
    # Each PID is the daemon itself: `ip netns exec` execs into it.
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.3; done
        kill -9 "$p" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
# keepalived runs on ka0 (its veth peer fr0 just keeps the link up);
# tcpdump listens on every interface of the namespace.
nsx ip link add ka0 type veth peer name fr0
nsx sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
nsx ip addr add 10.99.0.1/24 dev ka0
nsx ip link set ka0 up
nsx ip link set fr0 up

# --- keepalived: v2/IPv4 (vrid 21), v3/IPv4 (vrid 31), v3/IPv6 (vrid 36)
cat > "$WORK/keepalived.conf" <<KA
global_defs {
    router_id cx-cap
    vrrp_garp_master_delay 0
}
vrrp_instance v2v4 {
    interface ka0
    state MASTER
    version 2
    virtual_router_id 21
    priority 200
    advert_int 1
    virtual_ipaddress {
        10.99.0.21/24
        10.99.0.22/24
    }
}
vrrp_instance v3v4 {
    interface ka0
    state MASTER
    version 3
    virtual_router_id 31
    priority 150
    advert_int 0.5
    virtual_ipaddress {
        10.99.0.31/24
    }
}
vrrp_instance v3v6 {
    interface ka0
    state MASTER
    version 3
    virtual_router_id 36
    priority 120
    advert_int 1
    virtual_ipaddress {
        fe80::36/64
        2001:db8:99::36/64
    }
}
KA

ip netns exec "$NS" tcpdump -i any -U -w "$WORK/all.pcap" 'ip proto 112 or ip6 proto 112' 2>"$WORK/tcpdump.log" &
PIDS="$PIDS $!"
sleep 1
ip netns exec "$NS" keepalived -n -l -D -f "$WORK/keepalived.conf" -p "$WORK/ka.pid" -r "$WORK/ka-vrrp.pid" -c "$WORK/ka-chk.pid" >"$WORK/keepalived.log" 2>&1 &
PIDS="$PIDS $!"

# --- FRR: zebra + vrrpd in their own path space. vrrpd sends from an
#     interface that carries the virtual MAC and whose link is the VRRP
#     interface (normally a macvlan). This kernel has no macvlan, so each
#     FRR instance gets its own veth pair: frN carries the instance, its
#     peer frmN (linked to frN) carries the virtual MAC.
mkpair() { # n mac v4addr
    nsx ip link add "fr$1" type veth peer name "frm$1"
    nsx ip link set dev "frm$1" address "$2"
    nsx ip addr add "$3" dev "fr$1"
    nsx ip link set "fr$1" up
    nsx ip link set "frm$1" up
}
mkpair 41 00:00:5e:00:01:29 10.99.41.2/24
mkpair 42 00:00:5e:00:01:2a 10.99.42.2/24
mkpair 46 00:00:5e:00:02:2e 10.99.46.2/24
mkdir -p "$WORK/frr"
cat > "$WORK/frr/frr.conf" <<FRR
interface fr41
 vrrp 41 version 3
 vrrp 41 priority 180
 vrrp 41 advertisement-interval 200
 vrrp 41 ip 10.99.41.41
!
interface fr42
 vrrp 42 version 2
 vrrp 42 priority 170
 vrrp 42 advertisement-interval 1000
 vrrp 42 ip 10.99.42.42
!
interface fr46
 vrrp 46 version 3
 vrrp 46 priority 160
 vrrp 46 advertisement-interval 1000
 vrrp 46 ipv6 2001:db8:99::46
!
FRR
chown -R frr:frr "$WORK/frr" 2>/dev/null || true
chmod 755 "$WORK"
PS=cxvrrpcore
FRR_BIN=${FRR_BIN:-/usr/lib/frr}   # Debian package location
ip netns exec "$NS" "$FRR_BIN"/zebra -N "$PS" --vty_socket "$WORK/frr" -z "$WORK/frr/zserv.api" -i "$WORK/frr/zebra.pid" --log stdout -A 127.0.0.1 -P 0 -f /dev/null >"$WORK/zebra.log" 2>&1 &
PIDS="$PIDS $!"
sleep 2
ip netns exec "$NS" "$FRR_BIN"/vrrpd -N "$PS" --vty_socket "$WORK/frr" -z "$WORK/frr/zserv.api" -i "$WORK/frr/vrrpd.pid" --log stdout -A 127.0.0.1 -P 0 -f "$WORK/frr/frr.conf" >"$WORK/vrrpd.log" 2>&1 &
PIDS="$PIDS $!"

sleep "${CAPTURE_SECONDS:-12}"
cp "$WORK/all.pcap" "$OUT/vrrp.pcap"
for f in keepalived.log zebra.log vrrpd.log; do
    echo "== $f"; tail -n 20 "$WORK/$f" || true
done
