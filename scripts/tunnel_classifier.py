#!/usr/bin/env python3
"""How well a simple classifier tells Samizdat's HTTPS-camouflage connections from a browser
loading the same site (issue 8's goal: cross-validated ROC AUC <= 0.6).

Run as root on Debian (network namespaces, tcpdump, chromium), from the repository root:

    python3 scripts/tunnel_classifier.py --flows 40 [--samizdat target/release/samizdat]

Two namespaces joined by a veth pair (MTU 1500; --delay-ms adds a delay each way, if the kernel has netem). A
`samizdat node` in one serves a small decoy site (a page, a style sheet, a script, an image)
on `https/10.79.0.2:443` with `--tls-name www.example.org` and shares a 256 KiB file. From
the other, alternately: headless Chromium (Debian's `chromium`, a fresh profile each time)
loads https://www.example.org/ (resolved to the server, certificate errors ignored), and a
short-lived `samizdat fetch` fetches the file through the link's https hint. tcpdump records
every TCP flow to port 443. Each flow becomes the sizes (signed by direction) and the gaps of
its first 30 packets that carry payload, zero-padded; a random forest (scikit-learn, 300
trees) is scored by 5-fold stratified cross-validation. Prints one JSON line.

Needs: iproute2, tcpdump, chromium, and numpy + scikit-learn for python3 (a venv will do:
`python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy scikit-learn`, then run the script with
/tmp/v/bin/python3).
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

CLIENT_NS, SERVER_NS = "szcls-c", "szcls-s"
CLIENT_IP, SERVER_IP = "10.79.0.1", "10.79.0.2"
NAME = "www.example.org"
PACKETS = 30


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


def netns_up(delay_ms):
    netns_down()
    sh("ip", "netns", "add", CLIENT_NS)
    sh("ip", "netns", "add", SERVER_NS)
    sh("ip", "link", "add", "szcls0", "netns", CLIENT_NS, "type", "veth", "peer", "name",
       "szcls1", "netns", SERVER_NS)
    for ns, dev, ip in [(CLIENT_NS, "szcls0", CLIENT_IP), (SERVER_NS, "szcls1", SERVER_IP)]:
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # No offloads: the capture sees the packets as they would be on a real link.
        sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
           "gro", "off", check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if delay_ms > 0:
            # Needs the kernel's netem scheduler (sch_netem), which not every kernel has.
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem",
               "delay", f"{delay_ms}ms")


def netns_down():
    for ns in (CLIENT_NS, SERVER_NS):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def decoy_site(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("<!doctype html><html><head><meta charset=utf-8><title>Field notes</title>"
                "<link rel=stylesheet href=/style.css><script src=/app.js defer></script>"
                "</head><body><h1>Field notes</h1><img src=/logo.png alt=logo>"
                + "<p>" + "Notes from the field, week by week. " * 60 + "</p></body></html>\n")
    with open(os.path.join(root, "style.css"), "w") as f:
        f.write("body{font-family:serif;max-width:40em;margin:auto}" * 40 + "\n")
    with open(os.path.join(root, "app.js"), "w") as f:
        f.write("document.addEventListener('DOMContentLoaded',()=>{});\n" * 80)
    with open(os.path.join(root, "logo.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(24 * 1024))


def read_pcap(path):
    """(timestamp, src ip, src port, dst port, payload length, flags) of each TCP packet."""
    out = []
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        endian, nanos = {0xA1B2C3D4: ("<", False), 0xA1B23C4D: ("<", True),
                         0xD4C3B2A1: (">", False), 0x4D3CB2A1: (">", True)}[magic]
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            ts = sec + frac / (1e9 if nanos else 1e6)
            if linktype == 1:  # Ethernet
                if len(data) < 14 or data[12:14] != b"\x08\x00":
                    continue
                ip = data[14:]
            elif linktype == 113:  # Linux cooked
                ip = data[16:]
            else:
                ip = data
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:]
            sport, dport = struct.unpack(">HH", tcp[:4])
            doff = (tcp[12] >> 4) * 4
            flags = tcp[13]
            payload = total - ihl - doff
            src = ".".join(str(b) for b in ip[12:16])
            out.append((ts, src, sport, dport, payload, flags))
    return out


def flows_of(packets):
    """Flows keyed by the client's port: their SYN time and their payload packets."""
    flows = {}
    for ts, src, sport, dport, payload, flags in packets:
        client_port = sport if src == CLIENT_IP else dport
        f = flows.setdefault(client_port, {"start": ts, "packets": []})
        if payload > 0:
            sign = 1 if src == CLIENT_IP else -1
            f["packets"].append((ts, sign * payload))
    return flows


def features(packets):
    row, last = [], None
    for ts, size in packets[:PACKETS]:
        gap = 0.0 if last is None else (ts - last) * 1000.0
        last = ts
        row += [size, gap]
    row += [0.0] * (2 * PACKETS - len(row))
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=40, help="loads of each kind")
    ap.add_argument("--samizdat", default=None)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="write each flow's packets (JSON) here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces, tcpdump)")
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    binary = args.samizdat or next(p for p in ["target/release/samizdat", "target/debug/samizdat"]
                                   if os.path.exists(p))
    binary = os.path.abspath(binary)
    tmp = tempfile.mkdtemp(prefix="szcls-")
    server = dump = None
    try:
        netns_up(args.delay_ms)
        site = os.path.join(tmp, "site")
        decoy_site(site)
        sdata = os.path.join(tmp, "server")
        server = subprocess.Popen(
            ["ip", "netns", "exec", SERVER_NS, binary, "--json", "node", "--listen",
             f"https/{SERVER_IP}:443", "--tls-name", NAME, "--decoy-dir", site, "--data", sdata,
             "--local-network"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = server.stdout.readline()
        assert json.loads(line)["ok"], line
        for _ in range(100):
            if os.path.exists(os.path.join(sdata, "control.sock")):
                break
            time.sleep(0.05)
        blob = os.path.join(tmp, "file.bin")
        with open(blob, "wb") as f:
            f.write(os.urandom(256 * 1024))
        shared = sh(binary, "--json", "share", blob, "--data", sdata, capture_output=True, text=True)
        link = json.loads(shared.stdout)["link"]
        pcap = os.path.join(tmp, "cap.pcap")
        dump = subprocess.Popen(["ip", "netns", "exec", CLIENT_NS, "tcpdump", "-i", "szcls0",
                                 "-U", "-s", "128", "-w", pcap, "tcp", "port", "443"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        windows = []
        for i in range(args.flows):
            for kind in ("chromium", "samizdat"):
                t0 = time.time()
                if kind == "chromium":
                    profile = os.path.join(tmp, f"profile-{i}")
                    sh("ip", "netns", "exec", CLIENT_NS, "chromium", "--headless", "--no-sandbox",
                       "--disable-gpu", "--no-first-run", "--disable-background-networking",
                       "--disable-component-update", "--ignore-certificate-errors",
                       f"--user-data-dir={profile}", f"--host-resolver-rules=MAP {NAME} {SERVER_IP}",
                       "--dump-dom", f"https://{NAME}/", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
                    shutil.rmtree(profile, ignore_errors=True)
                else:
                    out = os.path.join(tmp, "copy.bin")
                    env = dict(os.environ, HOME=os.path.join(tmp, f"home-{i}"))
                    sh("ip", "netns", "exec", CLIENT_NS, binary, "--json", "fetch", "-", "-o", out,
                       input=link, text=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
                    os.remove(out)
                # Let the connection's last packets go by before the next one starts.
                time.sleep(1.5)
                windows.append((kind, t0, time.time()))
        time.sleep(1.0)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
        dump = None
        flows = flows_of(read_pcap(pcap))
        rows, labels, counts = [], [], {"chromium": 0, "samizdat": 0}
        for f in sorted(flows.values(), key=lambda f: f["start"]):
            kind = next((k for k, a, b in windows if a - 0.05 <= f["start"] <= b), None)
            if kind is None or not f["packets"]:
                continue
            rows.append(features(f["packets"]))
            labels.append(1 if kind == "samizdat" else 0)
            counts[kind] += 1
        if args.keep:
            with open(args.keep, "w") as f:
                json.dump([{"kind": k, "packets": [s for _, s in fl["packets"][:PACKETS]]}
                           for fl in sorted(flows.values(), key=lambda fl: fl["start"])
                           for k in [next((k for k, a, b in windows
                                           if a - 0.05 <= fl["start"] <= b), None)] if k], f)
        x, y = np.array(rows), np.array(labels)
        forest = RandomForestClassifier(n_estimators=300, random_state=args.seed)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=args.seed)
        auc = cross_val_score(forest, x, y, cv=folds, scoring="roc_auc")
        # The first packets' sizes, for the record (median over the flows of each kind).
        shape = {k: [int(np.median([r[2 * j] for r, l in zip(rows, labels) if l == v]))
                     for j in range(8)] for k, v in (("chromium", 0), ("samizdat", 1))}
        print(json.dumps({"auc": round(float(auc.mean()), 3),
                          "auc_folds": [round(float(a), 3) for a in auc],
                          "flows": counts, "packets": PACKETS, "delay_ms": args.delay_ms,
                          "features": "signed size and gap of each payload packet",
                          "median_first_sizes": shape}))
    finally:
        if dump:
            dump.kill()
        if server:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
        netns_down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
