//! Arbitrary client bytes at the HTTPS transport's web server (what a prober sends after the
//! TLS handshake, or a reverse proxy passes on): `https::serve` over an in-memory stream with
//! the decoy site, the client closing after its bytes. Nothing may panic, every connection
//! ends (time is paused, so the server's timeouts fire at once instead of stalling), and a
//! tunnel opens only for a request on the secret path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_transport::https::{Decoy, ServeCtx, path_prefix, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let ctx = ServeCtx::new(SECRET, Decoy::Welcome);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let input = data.to_vec();
        let talk = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        };
        let (served, out) = tokio::join!(serve(server, &ctx), talk);
        if let Ok(Some(_)) = served {
            let prefix = format!("/{}/", path_prefix(&SECRET));
            assert!(data.windows(prefix.len()).any(|w| w == prefix.as_bytes()));
        }
        // Whatever it answered is HTTP/1.1 from "nginx", or (to an HTTP/0.9 request) a bare
        // page.
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"<"),
            "{:?}",
            &out[..out.len().min(40)]
        );
    });
});
