//! Real processes through a real CDN stand-in: a daemon whose https listener speaks plain
//! HTTP behind nginx, nginx holding a front domain's certificate and routing the node's name
//! (by Host header) to it, and a file fetched by a short-lived node over `meek` — domain
//! fronted, so the TLS it speaks names only the front.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, cli, fetch_checked, s, share_link, spawn_daemon, write_random};
use samizdat_transport::https::ServerCert;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FRONT: &str = "www.front-cdn.example";
const NAME: &str = "hidden.example.org";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers too.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// nginx as the CDN: the front domain's own site, and the node's name passed to `upstream`.
fn cdn(dir: &Path, edge: u16, upstream: u16) -> Nginx {
    let d = dir.display();
    let user = if is_root() { "user root;" } else { "" };
    let conf = format!(
        "{user}\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n server_tokens off;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{\n  listen 127.0.0.1:{edge} ssl http2 default_server;\n  server_name {FRONT};\n\
         ssl_certificate {d}/front.pem;\n  ssl_certificate_key {d}/front.key;\n  root {d}/site;\n }}\n\
         server {{\n  listen 127.0.0.1:{edge} ssl http2;\n  server_name {NAME};\n\
         ssl_certificate {d}/front.pem;\n  ssl_certificate_key {d}/front.key;\n\
         location / {{\n   proxy_pass http://127.0.0.1:{upstream};\n   proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n   proxy_set_header Host $host;\n  }}\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let conf = dir.join("nginx.conf");
    let child = Command::new("nginx")
        .args(["-p", s(dir), "-c", s(&conf), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/test-all.sh installs it)");
    let running = Nginx(child);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", edge)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|st| {
            st.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_file_crosses_a_domain_fronting_cdn_over_meek() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("cdn");
    std::fs::create_dir_all(web.join("site")).unwrap();
    std::fs::write(web.join("site/index.html"), "<h1>Front CDN</h1>").unwrap();
    let front = ServerCert::generate(FRONT).unwrap();
    std::fs::write(web.join("front.pem"), &front.cert_pem).unwrap();
    std::fs::write(web.join("front.key"), &front.key_pem).unwrap();
    let (node_port, edge) = (free_port(), free_port());
    let _nginx = cdn(&web, edge, node_port);

    let data = tmp.path().join("a");
    let announce = format!("meek/127.0.0.1:{edge}?front={FRONT}");
    let listen = format!("https/127.0.0.1:{node_port}");
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--data", s(&data), "--listen", &listen, "--tls-name", NAME])
        .args(["--tls-front-cert", s(&web.join("front.pem")), "--announce", &announce]);
    let (_daemon, _) = spawn_daemon(cmd, &data);
    let out = cli(&["--json", "invite", "--data", s(&data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let addrs = v["addrs"].as_array().unwrap();
    assert_eq!(addrs.len(), 1, "{v}");
    let meek = addrs[0].as_str().unwrap();
    assert!(meek.starts_with(&format!("{announce}&name={NAME}&pin=")), "{meek}");
    assert!(meek.contains("&key="), "{meek}");

    let file = tmp.path().join("notes.bin");
    let content = write_random(&file, 3 << 20, 0x3e3e);
    let link = share_link(&file, &data);
    // The link's only hint is the CDN edge: the fetch goes through nginx, fronted.
    fetch_checked(&link, &tmp.path().join("copy.bin"), &content);
}

#[test]
fn bad_meek_addresses_and_options_are_refused() {
    for bad in
        ["meek/127.0.0.1:1", "meek/127.0.0.1:1?name=a.example", "meek/example.org:1?front=a.b"]
    {
        let out = cli(&["--json", "node", "--peer", bad, "--data", "/nonexistent"]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad_address"), "{bad}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let data = tmp.path().join("d");
    let out = cli(&[
        "--json",
        "node",
        "--data",
        s(&data),
        "--listen",
        "https/127.0.0.1:0",
        "--tls-name",
        NAME,
        "--tls-front-cert",
        s(&junk),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_certificate"));
    let out = cli(&["--json", "node", "--data", s(&data), "--tls-front-cert", s(&junk)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
