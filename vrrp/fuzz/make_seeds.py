#!/usr/bin/env python3
"""Write the decode seed corpus from the captured adverts in
../tests/data (valid v2/v3, IPv4/IPv6), plus a v3/IPv4 message-only form.
Run from this directory: python3 make_seeds.py"""
import ipaddress, os

def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(int.from_bytes(data[i:i + 2], 'big') for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def seed(src, dst, payload):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return bytes([0 if s.version == 4 else 1]) + s.packed + d.packed + payload

os.makedirs('seeds/decode', exist_ok=True)
data = '../tests/data'
for name in sorted(os.listdir(data)):
    if not name.endswith('.txt'):
        continue
    fields = dict(l.split(' ', 1) for l in open(f'{data}/{name}').read().splitlines() if not l.startswith('#'))
    payload = bytes.fromhex(fields['payload'].strip())
    out = seed(fields['src'].strip(), fields['dst'].strip(), payload)
    open(f'seeds/decode/{name[:-4]}', 'wb').write(out)
    if name == 'keepalived-v3-ipv4.txt':
        # The same advert with the message-only checksum (Cisco, Juniper).
        m = bytearray(payload); m[6:8] = b'\0\0'
        m[6:8] = checksum(bytes(m)).to_bytes(2, 'big')
        open('seeds/decode/message-only-v3-ipv4', 'wb').write(seed(fields['src'].strip(), fields['dst'].strip(), bytes(m)))
