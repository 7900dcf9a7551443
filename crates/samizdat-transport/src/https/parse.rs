//! Request heads parsed the way nginx 1.22 parses them (`ngx_http_parse_request_line` and
//! `ngx_http_parse_header_line`), so that every malformed or unusual head a prober sends is
//! taken, refused or waited for exactly where nginx would: leading empty lines are skipped,
//! a bare LF ends a line, methods are any run of capitals, `_` and `-`, absolute-form targets
//! name the host, HTTP/0.9 requests have no headers, versions above 1 are a 505, a request
//! line over 8 KiB is a 414, and header lines with bytes nginx does not take in a name are
//! ignored rather than refused.

/// The longest request line or header line (nginx: `large_client_header_buffers 4 8k`).
pub const MAX_LINE: usize = 8 * 1024;
/// The largest request head, all lines together (the four buffers).
pub const MAX_HEAD: usize = 4 * MAX_LINE;

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `GET /path` with no version and no headers.
    V09,
    /// `HTTP/1.0`.
    V10,
    /// `HTTP/1.1` or a later 1.x.
    V11,
}

/// A request head as parsed (no meaning given to the headers yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method: capitals, `_` and `-`.
    pub method: Vec<u8>,
    /// The target's path, raw (before `?` and `#`).
    pub path: Vec<u8>,
    /// What follows `?`, raw, when there is a `?`.
    pub args: Option<Vec<u8>>,
    /// The host of an absolute-form target (`GET https://host/ HTTP/1.1`), raw.
    pub uri_host: Option<Vec<u8>>,
    /// The version.
    pub version: Version,
    /// Header lines nginx takes (names lowercased), in order; values trimmed of spaces.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What nginx answers a head it cannot take with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400.
    Bad,
    /// 414: the request line does not fit a buffer.
    UriTooLarge,
    /// 400 "Request Header Or Cookie Too Large".
    HeaderTooLarge,
    /// 505: an HTTP major version above 1.
    Version,
}

/// How far a buffer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A whole head, and how many bytes of the buffer it took.
    Done(Head, usize),
    /// nginx refuses what arrived so far; `http09` when the request line was a complete
    /// HTTP/0.9 one (its answer has no header).
    Refused(Refusal, bool),
}

/// A cursor over the buffer. `None` from [`Cursor::next`] means "need more".
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn back(&mut self) {
        self.pos -= 1;
    }
}

type Step<T> = Result<T, Option<Refusal>>;

const NEED: Option<Refusal> = None;

fn bad<T>() -> Step<T> {
    Err(Some(Refusal::Bad))
}

fn byte(c: &mut Cursor<'_>) -> Step<u8> {
    c.next().ok_or(NEED)
}

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'_' || b == b'-'
}

/// A byte that may stand in a URI (nginx refuses control bytes and DEL there).
fn uri_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

struct Line {
    method: Vec<u8>,
    path: Vec<u8>,
    args: Option<Vec<u8>>,
    uri_host: Option<Vec<u8>>,
    version: Version,
}

/// The end of a line after its last field: optional spaces, then CRLF or LF.
fn line_end(c: &mut Cursor<'_>) -> Step<()> {
    loop {
        match byte(c)? {
            b' ' => {}
            b'\r' => return if byte(c)? == b'\n' { Ok(()) } else { bad() },
            b'\n' => return Ok(()),
            _ => return bad(),
        }
    }
}

/// `HTTP/major.minor` after the target, then the line end.
fn version(c: &mut Cursor<'_>) -> Step<Version> {
    for want in *b"TTP/" {
        if byte(c)? != want {
            return bad();
        }
    }
    let first = byte(c)?;
    if !(b'1'..=b'9').contains(&first) {
        return bad();
    }
    let mut major = u32::from(first - b'0');
    if major > 1 {
        return Err(Some(Refusal::Version));
    }
    loop {
        match byte(c)? {
            b'.' => break,
            d @ b'0'..=b'9' => {
                major = major * 10 + u32::from(d - b'0');
                if major > 1 {
                    return Err(Some(Refusal::Version));
                }
            }
            _ => return bad(),
        }
    }
    let d = byte(c)?;
    if !d.is_ascii_digit() {
        return bad();
    }
    let mut minor = u32::from(d - b'0');
    loop {
        match byte(c)? {
            d @ b'0'..=b'9' => {
                if minor > 99 {
                    return bad();
                }
                minor = minor * 10 + u32::from(d - b'0');
            }
            _ => {
                c.back();
                line_end(c)?;
                return Ok(if minor == 0 { Version::V10 } else { Version::V11 });
            }
        }
    }
}

/// After the target: spaces and a version, or the line end of an HTTP/0.9 request.
fn after_target(c: &mut Cursor<'_>, first: u8) -> Step<Version> {
    let mut b = first;
    loop {
        match b {
            b' ' => b = byte(c)?,
            b'\r' => return if byte(c)? == b'\n' { Ok(Version::V09) } else { bad() },
            b'\n' => return Ok(Version::V09),
            b'H' => return version(c),
            _ => return bad(),
        }
    }
}

/// A target's path, its arguments, and the byte after it.
type Target = (Vec<u8>, Option<Vec<u8>>, u8);

/// The path and arguments from the byte after the first (`/`, or `?` for arguments right
/// after an absolute-form host); returns them with the byte that ended them.
fn path_and_args(c: &mut Cursor<'_>, first: u8) -> Step<Target> {
    let (mut path, mut args) = match first {
        b'?' => (b"/".to_vec(), Some(Vec::new())),
        _ => (vec![first], None),
    };
    let mut fragment = false;
    loop {
        let b = byte(c)?;
        match b {
            b' ' | b'\r' | b'\n' => return Ok((path, args, b)),
            _ if !uri_byte(b) => return bad(),
            b'#' => fragment = true,
            b'?' if args.is_none() && !fragment => args = Some(Vec::new()),
            _ if fragment => {}
            _ => match &mut args {
                Some(a) => a.push(b),
                None => path.push(b),
            },
        }
    }
}

/// An absolute-form target after its first letter: `scheme://host[:port][/path]`.
fn absolute(c: &mut Cursor<'_>) -> Step<(Vec<u8>, Target)> {
    loop {
        let b = byte(c)?;
        match b | 0x20 {
            b'a'..=b'z' => {}
            _ if b.is_ascii_digit() || b == b'+' || b == b'-' || b == b'.' => {}
            _ if b == b':' => break,
            _ => return bad(),
        }
    }
    if byte(c)? != b'/' || byte(c)? != b'/' {
        return bad();
    }
    let mut host = Vec::new();
    let mut b = byte(c)?;
    if b == b'[' {
        host.push(b);
        loop {
            b = byte(c)?;
            host.push(b);
            match b {
                b']' => break,
                _ if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b) => {}
                _ => return bad(),
            }
        }
        b = byte(c)?;
    } else {
        while b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            host.push(b);
            b = byte(c)?;
        }
    }
    if b == b':' {
        loop {
            b = byte(c)?;
            if !b.is_ascii_digit() {
                break;
            }
        }
    }
    match b {
        b'/' | b'?' => Ok((host, path_and_args(c, b)?)),
        b' ' => Ok((host, (b"/".to_vec(), None, b' '))),
        _ => bad(),
    }
}

fn request_line(c: &mut Cursor<'_>) -> Step<Line> {
    let mut b = byte(c)?;
    while b == b'\r' || b == b'\n' {
        b = byte(c)?;
    }
    if !is_method_byte(b) {
        return bad();
    }
    let mut method = vec![b];
    loop {
        let b = byte(c)?;
        if b == b' ' {
            break;
        }
        if !is_method_byte(b) {
            return bad();
        }
        method.push(b);
    }
    let mut b = byte(c)?;
    while b == b' ' {
        b = byte(c)?;
    }
    let (uri_host, path, args, end) = if b == b'/' {
        let (path, args, end) = path_and_args(c, b)?;
        (None, path, args, end)
    } else if (b | 0x20).is_ascii_lowercase() {
        let (host, (path, args, end)) = absolute(c)?;
        (Some(host), path, args, end)
    } else {
        return bad();
    };
    let version = after_target(c, end)?;
    if version == Version::V09 && method != b"GET" {
        return Err(Some(Refusal::Bad));
    }
    Ok(Line { method, path, args, uri_host, version })
}

/// One header line. `Ok(None)` is the blank line ending the head; a name nginx does not take
/// gives `Ok(Some(None))` (the line is ignored).
#[allow(clippy::type_complexity)]
fn header_line(c: &mut Cursor<'_>) -> Step<Option<Option<(String, Vec<u8>)>>> {
    let first = byte(c)?;
    match first {
        b'\r' => return if byte(c)? == b'\n' { Ok(None) } else { bad() },
        b'\n' => return Ok(None),
        _ => {}
    }
    let mut name = String::new();
    let mut invalid = false;
    let mut b = first;
    let mut value = Vec::new();
    loop {
        match b {
            _ if b.is_ascii_alphanumeric() || b == b'-' => {
                name.push(b.to_ascii_lowercase() as char)
            }
            b':' if !name.is_empty() || invalid => break,
            b'\r' if !name.is_empty() || invalid => {
                if byte(c)? != b'\n' {
                    return bad();
                }
                return Ok(Some((!invalid).then_some((name, value))));
            }
            b'\n' if !name.is_empty() || invalid => {
                return Ok(Some((!invalid).then_some((name, value))));
            }
            _ if b <= 0x20 || b == 0x7f || b == b':' => return bad(),
            _ => invalid = true,
        }
        b = byte(c)?;
    }
    let mut b = byte(c)?;
    while b == b' ' {
        b = byte(c)?;
    }
    loop {
        match b {
            0 => return bad(),
            b'\r' => {
                if byte(c)? != b'\n' {
                    return bad();
                }
                break;
            }
            b'\n' => break,
            _ => value.push(b),
        }
        b = byte(c)?;
    }
    while value.last() == Some(&b' ') {
        value.pop();
    }
    Ok(Some((!invalid).then_some((name, value))))
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut c = Cursor { buf, pos: 0 };
    let line = match request_line(&mut c) {
        Ok(line) => line,
        Err(Some(refusal)) => {
            // An HTTP/0.9 line with another method than GET is refused without a header.
            let http09 = refusal == Refusal::Bad && ends_09_line(buf);
            return Parsed::Refused(refusal, http09);
        }
        Err(None) => {
            let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
            return if buf.len() - start >= MAX_LINE {
                Parsed::Refused(Refusal::UriTooLarge, false)
            } else {
                Parsed::Partial
            };
        }
    };
    let mut head = Head {
        method: line.method,
        path: line.path,
        args: line.args,
        uri_host: line.uri_host,
        version: line.version,
        headers: Vec::new(),
    };
    if head.version == Version::V09 {
        return Parsed::Done(head, c.pos);
    }
    loop {
        let start = c.pos;
        match header_line(&mut c) {
            Ok(None) => return Parsed::Done(head, c.pos),
            Ok(Some(Some(h))) => head.headers.push(h),
            Ok(Some(None)) => {}
            Err(Some(refusal)) => return Parsed::Refused(refusal, false),
            Err(None) => {
                return if buf.len() - start >= MAX_LINE || buf.len() >= MAX_HEAD {
                    Parsed::Refused(Refusal::HeaderTooLarge, false)
                } else {
                    Parsed::Partial
                };
            }
        }
        if c.pos - start > MAX_LINE || c.pos > MAX_HEAD {
            return Parsed::Refused(Refusal::HeaderTooLarge, false);
        }
    }
}

/// Whether the first line of `buf` is a complete `METHOD /target` line without a version.
fn ends_09_line(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let rest = &buf[start..];
    let Some(end) = rest.iter().position(|&b| b == b'\n') else { return false };
    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    method.iter().all(|&b| is_method_byte(b))
        && target.first() == Some(&b'/')
        && target.iter().all(|&b| uri_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> Head {
        match parse(buf) {
            Parsed::Done(h, n) => {
                assert_eq!(n, buf.len(), "{:?}", String::from_utf8_lossy(buf));
                h
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn refused(buf: &[u8]) -> (Refusal, bool) {
        match parse(buf) {
            Parsed::Refused(r, http09) => (r, http09),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn heads_parse_like_nginx() {
        let h = done(b"GET /a/b?x=1#f HTTP/1.1\r\nHost: Example.org \r\nX-A:  v  v \r\n\r\n");
        assert_eq!((h.method.as_slice(), h.path.as_slice()), (&b"GET"[..], &b"/a/b"[..]));
        assert_eq!(h.args.as_deref(), Some(&b"x=1"[..]));
        assert_eq!(h.version, Version::V11);
        assert_eq!(h.headers[0], ("host".into(), b"Example.org".to_vec()));
        assert_eq!(h.headers[1], ("x-a".into(), b"v  v".to_vec()));
        // Leading empty lines, bare LFs, several spaces, trailing spaces after the version.
        let h = done(b"\r\n\nGET  /  HTTP/1.0 \nA: b\n\n");
        assert_eq!((h.version, h.headers.len()), (Version::V10, 1));
        // Odd but taken: later 1.x versions, unknown methods, names with odd bytes (ignored),
        // a line without a colon (an empty value), bytes above 0x7f.
        assert_eq!(done(b"GET / HTTP/1.100\r\n\r\n").version, Version::V11);
        assert_eq!(done(b"FOO_-BAR / HTTP/1.1\r\n\r\n").method, b"FOO_-BAR");
        let h = done(
            b"GET /\xe9 HTTP/1.1\r\nBad(Name): x\r\nX_Y: z\r\nNonsense\r\nV: \xe9\x01\r\n\r\n",
        );
        let names: Vec<&str> = h.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["nonsense", "v"]);
        assert_eq!(h.headers[1].1, b"\xe9\x01");
        // Absolute form.
        let h = done(b"GET https://Host.example:8443/p?q HTTP/1.1\r\n\r\n");
        assert_eq!(h.uri_host.as_deref(), Some(&b"Host.example"[..]));
        assert_eq!((h.path.as_slice(), h.args.as_deref()), (&b"/p"[..], Some(&b"q"[..])));
        let h = done(b"GET http://h HTTP/1.1\r\n\r\n");
        assert_eq!((h.uri_host.as_deref(), h.path.as_slice()), (Some(&b"h"[..]), &b"/"[..]));
        let h = done(b"GET http://[::1]:80/ HTTP/1.1\r\n\r\n");
        assert_eq!(h.uri_host.as_deref(), Some(&b"[::1]"[..]));
        let h = done(b"GET http://h?a=b HTTP/1.1\r\n\r\n");
        assert_eq!((h.path.as_slice(), h.args.as_deref()), (&b"/"[..], Some(&b"a=b"[..])));
        // HTTP/0.9: no headers follow.
        let h = done(b"GET /x\r\n");
        assert_eq!((h.version, h.headers.len()), (Version::V09, 0));
        assert_eq!(done(b"GET /x \n").version, Version::V09);
    }

    #[test]
    fn bad_heads_are_refused_where_nginx_refuses_them() {
        for bad in [
            &b"get / HTTP/1.1\r\n\r\n"[..],
            b"G(T / HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\t HTTP/1.1\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/01.1\r\n\r\n",
            b"GET / HTTP/1.1000\r\n\r\n",
            b"GET / HTTP/1.1x\r\n\r\n",
            b"GET / HTTP/1.1\rX",
            b"GET / HTTP/1.\r\n\r\n",
            b"GET / HTTP/1.1\r\nX A: b\r\n\r\n",
            b"GET / HTTP/1.1\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\n: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
            b"GET / HTTP/1.1\r\nA\r\r\n\r\n",
            b"GET / HTTP/1.1\r\n\rX",
            b"GET ftp:/x HTTP/1.1\r\n\r\n",
            b"GET h%://x/ HTTP/1.1\r\n\r\n",
            b"GET http://a_b/ HTTP/1.1\r\n\r\n",
            b"GET http://[a b]/ HTTP/1.1\r\n\r\n",
            b"GET http://h:8x/ HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01",
        ] {
            assert_eq!(refused(bad), (Refusal::Bad, false), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(refused(b"POST /\r\n"), (Refusal::Bad, true));
        assert_eq!(refused(b"GET / HTTP/2.0\r\n"), (Refusal::Version, false));
        assert_eq!(refused(b"GET / HTTP/10"), (Refusal::Version, false));
        let long = format!("GET /{} HTTP/1.1", "a".repeat(MAX_LINE));
        assert_eq!(refused(long.as_bytes()), (Refusal::UriTooLarge, false));
        let long = format!("GET / HTTP/1.1\r\nA: {}", "a".repeat(MAX_LINE));
        assert_eq!(refused(long.as_bytes()), (Refusal::HeaderTooLarge, false));
        let long = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert_eq!(refused(long.as_bytes()), (Refusal::HeaderTooLarge, false));
        let many: String = (0..20).map(|i| format!("X-{i}: {}\r\n", "b".repeat(2000))).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(refused(many.as_bytes()), (Refusal::HeaderTooLarge, false));
    }

    #[test]
    fn unfinished_heads_wait_for_more() {
        for partial in [
            &b""[..],
            b"\r\n",
            b"GET",
            b"GET /",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\nHost: x",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",
            b"GET http://h",
            b"GET http://[::1",
        ] {
            assert_eq!(parse(partial), Parsed::Partial, "{:?}", String::from_utf8_lossy(partial));
        }
        // What follows a head is left in the buffer.
        match parse(b"GET / HTTP/1.1\r\n\r\nGET /") {
            Parsed::Done(_, n) => assert_eq!(n, 18),
            other => panic!("{other:?}"),
        }
    }
}
