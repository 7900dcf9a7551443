//! Helpers the HTTPS tests share: a prober's TLS client and a real nginx.
#![allow(dead_code)]

use btls::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;

/// A TLS connection to `socket` that checks nothing, as a prober's would be.
pub async fn raw_tls(socket: SocketAddr, name: &str) -> tokio_btls::SslStream<TcpStream> {
    raw_tls_over(TcpStream::connect(socket).await.unwrap(), name).await
}

/// [`raw_tls`] over a connection already open.
pub async fn raw_tls_over(tcp: TcpStream, name: &str) -> tokio_btls::SslStream<TcpStream> {
    let tls = try_raw_tls_over(tcp, name).await.expect("the TLS handshake");
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

/// [`raw_tls_over`], `None` when the handshake fails.
pub async fn try_raw_tls_over(
    tcp: TcpStream,
    name: &str,
) -> Option<tokio_btls::SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x02h2\x08http/1.1").unwrap();
    let ssl = b.build().configure().unwrap().verify_hostname(false).into_ssl(name).unwrap();
    let mut tls = tokio_btls::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut tls).connect().await.ok()?;
    Some(tls)
}

fn which(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A running nginx; dropping it stops it (SIGTERM, so the master stops its workers too).
pub struct Nginx {
    child: std::process::Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Starts nginx with its working files in `dir` and one `server { … }` block whose body is
/// `server` with `{port}` replaced by a free port; waits until it listens.
pub async fn nginx(dir: &Path, server: &str) -> Nginx {
    let Some(nginx) = which("nginx") else {
        panic!("nginx is not installed (scripts/test-all.sh installs it)");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root_user = if is_root() { "user root;" } else { "" };
    let d = dir.display();
    let conf = format!(
        "{root_user}\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n server_tokens off;\n include /etc/nginx/mime.types;\n\
         default_type application/octet-stream;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n server {{\n{}\n }}\n}}\n",
        server.replace("{port}", &port.to_string())
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new(nginx)
        .args(["-p", &d.to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
        .args(["-g", "daemon off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = Nginx { child, port };
    let t0 = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "nginx did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
}
