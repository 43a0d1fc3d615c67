#!/usr/bin/env python3
"""Extract the first VRRP advert per (sender, VRID, version) from a pcap
(Linux cooked capture, as `tcpdump -i any` writes) into hex text files."""
import ipaddress, struct, sys

def packets(path):
    data = open(path, 'rb').read()
    magic, = struct.unpack('<I', data[:4])
    assert magic == 0xa1b2c3d4, 'little-endian microsecond pcap expected'
    linktype, = struct.unpack('<I', data[20:24])
    off = 24
    while off < len(data):
        _, _, incl, _ = struct.unpack('<IIII', data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 113:      # LINUX_SLL: 16-byte header
            proto, = struct.unpack('>H', frame[14:16]); ip = frame[16:]
        elif linktype == 276:    # LINUX_SLL2: 20-byte header
            proto, = struct.unpack('>H', frame[0:2]); ip = frame[20:]
        else:
            raise SystemExit(f'unsupported link type {linktype}')
        if proto == 0x0800 and ip[9] == 112:
            ihl = (ip[0] & 0x0f) * 4
            total, = struct.unpack('>H', ip[2:4])
            yield (ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20]), ip[8], ip[ihl:total])
        elif proto == 0x86dd and ip[6] == 112:
            plen, = struct.unpack('>H', ip[4:6])
            yield (ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40]), ip[7], ip[40:40 + plen])

def main(pcap, outdir, names):
    # names: "SRCPREFIX:VRID=filename,..." choose which sender/vrid goes where
    wanted = dict(item.split('=') for item in names.split(','))
    seen = set()
    for src, dst, ttl, payload in packets(pcap):
        key = f'{payload[1]}'
        if key not in wanted or key in seen:
            continue
        seen.add(key)
        name, origin = wanted[key].split('@')
        with open(f'{outdir}/{name}', 'w') as f:
            f.write(f'# VRRP advert captured from {origin}; see README.md\n')
            f.write(f'src {src}\ndst {dst}\nttl {ttl}\npayload {payload.hex()}\n')
        print(name, src, dst, ttl, payload.hex())
    missing = set(wanted) - seen
    if missing:
        raise SystemExit(f'no advert captured for VRID(s) {sorted(missing)}')

if __name__ == '__main__':
    main(*sys.argv[1:])
