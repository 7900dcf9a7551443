//! A byte stream carried in veil records over another stream.

use super::handshake::{Direction, Keys, MAX_DATA, MAX_RECORD, MAX_RECORD_PAD};
use rand_core::{OsRng, RngCore};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Records padded at random at the start of each direction, where a connection's shape is
/// most telling (the session's handshake messages have fixed sizes).
const PADDED_RECORDS: u8 = 8;
/// How much is read from the inner stream at once, at least.
const READ_CHUNK: usize = 32 * 1024;
/// The receive buffer: room for a whole record and a read behind it. Allocated (and zeroed)
/// once, on the first read: reads never zero it again, so a peer sending tiny segments costs
/// no more than their bytes.
const INBUF: usize = 2 + MAX_RECORD + READ_CHUNK;

/// A stream whose bytes travel as veil records: lengths masked, contents sealed.
pub struct VeilStream<S> {
    inner: S,
    send: Direction,
    recv: Direction,
    /// Sealed records not yet written.
    out: Vec<u8>,
    out_pos: usize,
    /// Received bytes: `inbuf[plain]` is opened data not yet read, `inbuf[next..filled]` the
    /// rest.
    inbuf: Vec<u8>,
    filled: usize,
    plain: std::ops::Range<usize>,
    next: usize,
    padded_out: u8,
    eof: bool,
}

impl<S> VeilStream<S> {
    /// Wraps `inner` with the keys of a finished handshake; `early` holds bytes already
    /// read past the handshake.
    pub fn new(inner: S, keys: Keys, early: Vec<u8>) -> Self {
        VeilStream {
            inner,
            send: keys.send,
            recv: keys.recv,
            out: Vec::new(),
            out_pos: 0,
            filled: early.len(),
            inbuf: early,
            plain: 0..0,
            next: 0,
            padded_out: PADDED_RECORDS,
            eof: false,
        }
    }

    /// Opens the next whole record in `inbuf[next..]`, if one is there.
    fn open_record(&mut self) -> io::Result<bool> {
        let avail = &self.inbuf[self.next..self.filled];
        let [a, b, ..] = *avail else { return Ok(false) };
        let len = self.recv.body_len([a, b], MAX_RECORD)?;
        if avail.len() < 2 + len {
            return Ok(false);
        }
        let start = self.next + 2;
        let data = self.recv.open(&mut self.inbuf[start..start + len], &[])?;
        self.plain = start + data.start..start + data.end;
        self.next = start + len;
        Ok(true)
    }
}

impl<S: AsyncWrite + Unpin> VeilStream<S> {
    /// Writes out the sealed records; `Ready(Ok)` once all are written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for VeilStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.inbuf[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                return Poll::Ready(Ok(()));
            }
            if this.open_record()? {
                continue;
            }
            if this.eof {
                if this.next < this.filled {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "veil: stream cut inside a record",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            // Keep only the unread part of the buffer, then read more behind it.
            if this.next > 0 {
                this.inbuf.copy_within(this.next..this.filled, 0);
                this.filled -= this.next;
                this.next = 0;
                this.plain = 0..0;
            }
            if this.inbuf.len() < INBUF {
                this.inbuf.resize(INBUF, 0);
            }
            let mut rb = ReadBuf::new(&mut this.inbuf[this.filled..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let got = rb.filled().len();
            this.filled += got;
            ready!(polled)?;
            if got == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for VeilStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(MAX_DATA);
        let pad = if this.padded_out > 0 {
            this.padded_out -= 1;
            (OsRng.next_u32() as usize) % (MAX_RECORD_PAD + 1)
        } else {
            0
        };
        this.send.seal(&buf[..n], pad, &[], &mut this.out)?;
        // The record is ours now; start it on its way, and report a failure only later.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
