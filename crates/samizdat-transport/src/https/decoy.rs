//! The decoy site's answers, as nginx 1.22's static, index, not-modified and range modules
//! give them for a `root` directory with the default `index index.html`.

use super::http1::{Body, Response};
use super::parse::Version;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest decoy file served (larger files are not part of a plausible small site).
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// nginx's default page, served when no decoy directory is given.
const WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n";
/// The welcome page's modification time (nginx 1.22's `html/index.html`), as UNIX seconds.
pub const WELCOME_MTIME: u64 = 1_681_177_534;

/// What strangers are served.
#[derive(Debug, Clone, Default)]
pub enum Decoy {
    /// nginx's default welcome page at `/` (a root holding only `index.html`).
    #[default]
    Welcome,
    /// A static directory (index.html for directories), like nginx's `root`.
    Dir(PathBuf),
}

impl Decoy {
    /// A static directory decoy; the directory must exist.
    pub fn dir(path: impl AsRef<Path>) -> io::Result<Decoy> {
        let root = std::fs::canonicalize(path)?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "decoy must be a directory"));
        }
        Ok(Decoy::Dir(root))
    }
}

/// What a request's path is, as far as the site goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    /// The method.
    pub method: &'a [u8],
    /// The version.
    pub version: Version,
    /// The server name for redirects (the request's host, or the local address).
    pub host: &'a str,
    /// The local port (redirects name it unless it is 443).
    pub port: u16,
    /// The raw query string.
    pub args: Option<&'a [u8]>,
    /// Finds a header (first occurrence).
    pub headers: &'a [(String, Vec<u8>)],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

/// The request target's path, percent-decoded, slashes merged and `.`/`..` resolved, or
/// `None` for a target nginx refuses with 400.
pub(crate) fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut raw = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            raw.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            raw.push(b);
            i += 1;
        }
    }
    if raw.first() != Some(&b'/') || raw.contains(&0) {
        return None;
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for segment in raw.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    let mut normal = b"/".to_vec();
    normal.extend_from_slice(&out.join(&b'/'));
    let last = raw.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    if (last.is_empty() || last == b"." || last == b"..") && normal.len() > 1 {
        normal.push(b'/');
    }
    Some(normal)
}

/// What a path names in the site.
enum Entry {
    Missing,
    Forbidden,
    Dir,
    File(FileEntry),
}

struct FileEntry {
    source: Source,
    len: u64,
    mtime: u64,
}

enum Source {
    Disk(PathBuf),
    Welcome,
}

fn mtime_of(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Looks `path` (normalized, without a trailing slash) up under the decoy.
async fn lookup(decoy: &Decoy, path: &[u8]) -> Entry {
    let root = match decoy {
        Decoy::Welcome => {
            return match path {
                b"" | b"/" => Entry::Dir,
                b"/index.html" => Entry::File(FileEntry {
                    source: Source::Welcome,
                    len: WELCOME.len() as u64,
                    mtime: WELCOME_MTIME,
                }),
                _ => Entry::Missing,
            };
        }
        Decoy::Dir(root) => root,
    };
    let mut file = root.clone();
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        file.push(std::ffi::OsStr::from_bytes(segment));
    }
    // Symbolic links must not lead out of the decoy directory: resolved and checked before
    // anything about the target (even whether it is a directory) shows in the answer.
    let real = match tokio::fs::canonicalize(&file).await {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Entry::Forbidden,
        Err(_) => return Entry::Missing,
    };
    if !real.starts_with(root) {
        return Entry::Missing;
    }
    match tokio::fs::metadata(&real).await {
        Ok(m) if m.is_dir() => Entry::Dir,
        Ok(m) if m.is_file() && m.len() <= MAX_FILE => {
            Entry::File(FileEntry { len: m.len(), mtime: mtime_of(&m), source: Source::Disk(real) })
        }
        Ok(m) if m.is_file() => Entry::Forbidden,
        Ok(_) => Entry::Missing,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Entry::Forbidden,
        Err(_) => Entry::Missing,
    }
}

fn content_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) => name[i + 1..].to_ascii_lowercase(),
        None => Vec::new(),
    };
    match ext.as_slice() {
        b"html" | b"htm" | b"shtml" => "text/html",
        b"css" => "text/css",
        b"xml" | b"rss" => "text/xml",
        b"js" => "application/javascript",
        b"json" => "application/json",
        b"txt" => "text/plain",
        b"svg" | b"svgz" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"ico" => "image/x-icon",
        b"avif" => "image/avif",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"pdf" => "application/pdf",
        b"zip" => "application/zip",
        b"mp4" => "video/mp4",
        b"mp3" => "audio/mpeg",
        b"wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn get_head_or_post(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"POST")
}

/// The site's answer to `req` for the normalized `path`.
pub(crate) async fn respond(
    decoy: &Decoy,
    boundary: &AtomicU64,
    req: &Request<'_>,
    path: &[u8],
) -> Response {
    if path.ends_with(b"/") {
        // The index module, then (declined) the static module's method check, then the
        // core's "directory index is forbidden".
        if !get_head_or_post(req.method) {
            return Response::error(405);
        }
        let mut index = path.to_vec();
        index.extend_from_slice(b"index.html");
        let dir = &path[..path.len() - 1];
        return match lookup(decoy, &index).await {
            Entry::File(_) | Entry::Dir => static_file(decoy, boundary, req, &index).await,
            Entry::Forbidden => Response::error(403),
            Entry::Missing => match lookup(decoy, dir).await {
                Entry::Dir => Response::error(403),
                _ => Response::error(404),
            },
        };
    }
    static_file(decoy, boundary, req, path).await
}

async fn static_file(
    decoy: &Decoy,
    boundary: &AtomicU64,
    req: &Request<'_>,
    path: &[u8],
) -> Response {
    if !get_head_or_post(req.method) {
        return Response::error(405);
    }
    let file = match lookup(decoy, path).await {
        Entry::Missing => return Response::error(404),
        Entry::Forbidden => return Response::error(403),
        Entry::Dir => {
            let mut location = match req.port {
                443 => format!("https://{}", req.host).into_bytes(),
                port => format!("https://{}:{port}", req.host).into_bytes(),
            };
            location.extend_from_slice(path);
            location.push(b'/');
            if let Some(args) = req.args {
                location.push(b'?');
                location.extend_from_slice(args);
            }
            return Response {
                location: Some(String::from_utf8_lossy(&location).into_owned()),
                ..Response::error(301)
            };
        }
        Entry::File(f) => f,
    };
    if req.method == b"POST" {
        return Response::error(405);
    }
    let etag = format!("\"{:x}-{:x}\"", file.mtime, file.len);
    let mut response = Response {
        code: 200,
        content_type: Some(content_type(path).into()),
        length: Some(file.len),
        last_modified: Some(file.mtime),
        location: None,
        after: vec![("ETag", etag.clone())],
        body: Body::Empty,
        close_after: false,
    };
    // The not-modified filter.
    if let Some(v) = req.header("if-unmodified-since") {
        if parse_http_date(v).is_none_or(|t| t < file.mtime) {
            return Response { close_after: true, ..Response::error(412) };
        }
    }
    if let Some(v) = req.header("if-match") {
        if !etag_matches(v, &etag, false) {
            return Response { close_after: true, ..Response::error(412) };
        }
    }
    let ims = req.header("if-modified-since");
    let inm = req.header("if-none-match");
    if (ims.is_some() || inm.is_some())
        && ims.is_none_or(|v| parse_http_date(v) == Some(file.mtime))
        && inm.is_none_or(|v| etag_matches(v, &etag, true))
    {
        response.code = 304;
        response.content_type = None;
        response.length = None;
        return response;
    }
    // The range filter.
    let ranges =
        if req.version >= Version::V10 { ranges(req, &file, &etag) } else { Ranges::Whole };
    let data = match &file.source {
        Source::Welcome => Data::Bytes(WELCOME.as_bytes()),
        Source::Disk(p) => match tokio::fs::File::open(p).await {
            Ok(f) => Data::File(f),
            Err(_) => return Response::error(403),
        },
    };
    match ranges {
        Ranges::Whole => {
            response.after.push(("Accept-Ranges", "bytes".into()));
            response.body = data.whole(file.len);
            response
        }
        Ranges::Unsatisfiable => Response {
            after: vec![("Content-Range", format!("bytes */{}", file.len))],
            ..Response::error(416)
        },
        Ranges::Some(list) if list.len() == 1 => {
            let (start, end) = list[0];
            response.code = 206;
            response.length = Some(end - start);
            response
                .after
                .push(("Content-Range", format!("bytes {start}-{}/{}", end - 1, file.len)));
            response.body = data.part(start, end - start);
            response
        }
        Ranges::Some(list) => {
            let b = format!("{:020}", boundary.fetch_add(1, Ordering::Relaxed) + 1);
            let kind = response.content_type.take().unwrap_or_default();
            let mut parts = Vec::new();
            let mut total = 0u64;
            for (start, end) in list {
                let head = format!(
                    "\r\n--{b}\r\nContent-Type: {kind}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
                    end - 1,
                    file.len
                );
                total += head.len() as u64 + (end - start);
                parts.push((head.into_bytes(), start, end - start));
            }
            let tail = format!("\r\n--{b}--\r\n").into_bytes();
            total += tail.len() as u64;
            response.code = 206;
            response.content_type = Some(format!("multipart/byteranges; boundary={b}"));
            response.length = Some(total);
            response.body = data.parts(parts, tail);
            response
        }
    }
}

enum Data {
    Bytes(&'static [u8]),
    File(tokio::fs::File),
}

impl Data {
    fn whole(self, len: u64) -> Body {
        self.part(0, len)
    }

    fn part(self, start: u64, len: u64) -> Body {
        self.parts(vec![(Vec::new(), start, len)], Vec::new())
    }

    fn parts(self, parts: Vec<(Vec<u8>, u64, u64)>, tail: Vec<u8>) -> Body {
        match self {
            Data::Bytes(b) => {
                let mut out = Vec::new();
                for (head, start, len) in parts {
                    out.extend_from_slice(&head);
                    let (s, l) = (start as usize, len as usize);
                    out.extend_from_slice(&b[s..s + l]);
                }
                out.extend_from_slice(&tail);
                Body::Bytes(out)
            }
            Data::File(f) => Body::File { file: f, parts, tail },
        }
    }
}

enum Ranges {
    Whole,
    Unsatisfiable,
    Some(Vec<(u64, u64)>),
}

/// `ngx_http_range_parse` with `If-Range`: ranges as `[start, end)`.
fn ranges(req: &Request<'_>, file: &FileEntry, etag: &str) -> Ranges {
    let Some(value) = req.header("range") else { return Ranges::Whole };
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bytes=") {
        return Ranges::Whole;
    }
    if let Some(if_range) = req.header("if-range") {
        let fresh = if if_range.len() >= 2 && if_range.ends_with(b"\"") {
            if_range == etag.as_bytes()
        } else {
            parse_http_date(if_range) == Some(file.mtime)
        };
        if !fresh {
            return Ranges::Whole;
        }
    }
    let len = file.len;
    let mut p = &value[6..];
    let at = |p: &[u8]| p.first().copied().unwrap_or(0);
    let skip_spaces = |p: &mut &[u8]| {
        while at(p) == b' ' {
            *p = &p[1..];
        }
    };
    let number = |p: &mut &[u8]| -> Option<u64> {
        let mut n: u64 = 0;
        while at(p).is_ascii_digit() {
            n = n.checked_mul(10)?.checked_add(u64::from(at(p) - b'0'))?;
            *p = &p[1..];
        }
        Some(n)
    };
    // The number ending a range: digits, spaces, then `,` or the end.
    let last_number = |p: &mut &[u8]| -> Option<u64> {
        if !at(p).is_ascii_digit() {
            return None;
        }
        let n = number(p)?;
        skip_spaces(p);
        (at(p) == b',' || at(p) == 0).then_some(n)
    };
    let mut list = Vec::new();
    let mut size = 0u64;
    loop {
        skip_spaces(&mut p);
        let (start, end);
        if at(p) != b'-' {
            if !at(p).is_ascii_digit() {
                return Ranges::Unsatisfiable;
            }
            let Some(s) = number(&mut p) else { return Ranges::Unsatisfiable };
            skip_spaces(&mut p);
            if at(p) != b'-' {
                return Ranges::Unsatisfiable;
            }
            p = &p[1..];
            skip_spaces(&mut p);
            if at(p) == b',' || at(p) == 0 {
                (start, end) = (s, len);
            } else {
                let Some(e) = last_number(&mut p) else { return Ranges::Unsatisfiable };
                (start, end) = (s, if e >= len { len } else { e + 1 });
            }
        } else {
            p = &p[1..];
            let Some(e) = last_number(&mut p) else { return Ranges::Unsatisfiable };
            (start, end) = (len.saturating_sub(e), len);
        }
        if start < end {
            list.push((start, end));
            size += end - start;
        } else if start == 0 {
            return Ranges::Whole;
        }
        if at(p) != b',' {
            break;
        }
        p = &p[1..];
    }
    if list.is_empty() {
        Ranges::Unsatisfiable
    } else if size > len {
        Ranges::Whole
    } else {
        Ranges::Some(list)
    }
}

/// `ngx_http_test_if_match`: whether a header's list of entity tags names `etag` (`*` names
/// every one; `weak` lets `W/` tags match, as If-None-Match does).
fn etag_matches(header: &[u8], etag: &str, weak: bool) -> bool {
    if header == b"*" {
        return true;
    }
    let etag = etag.as_bytes();
    let mut s = header;
    while !s.is_empty() {
        if weak && s.len() > 2 && s.starts_with(b"W/") {
            s = &s[2..];
        }
        if etag.len() > s.len() {
            return false;
        }
        if s.starts_with(etag) {
            let mut rest = &s[etag.len()..];
            while let [b' ' | b'\t', tail @ ..] = rest {
                rest = tail;
            }
            if rest.is_empty() || rest[0] == b',' {
                return true;
            }
        }
        while let [c, tail @ ..] = s {
            if *c == b',' {
                break;
            }
            s = tail;
        }
        while let [b' ' | b'\t' | b',', tail @ ..] = s {
            s = tail;
        }
    }
    false
}

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`) as UNIX seconds.
pub(crate) fn parse_http_date(v: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(v).ok()?;
    let (_, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, m, s): (u64, u64, u64) =
        (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * i64::from(mo) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::https::http1::http_date;

    #[test]
    fn paths_are_decoded_and_resolved_or_refused() {
        let n = |p: &str| normalize(p.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned());
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(n("//a//b/").as_deref(), Some("/a/b/"));
        assert_eq!(n("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(n("/%61%2Fb").as_deref(), Some("/a/b"));
        assert_eq!(n("/a\\b").as_deref(), Some("/a\\b"));
        for bad in ["a", "/..", "/%", "/%4", "/%zz", "/%00", "/a/../../b"] {
            assert_eq!(normalize(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn dates_round_trip() {
        for t in [0, 951_782_400, 1_796_311_725, 4_102_444_800] {
            assert_eq!(parse_http_date(http_date(t).as_bytes()), Some(t));
        }
        for bad in ["", "Thu, 01 Jan 1970 00:00:00", "Thu, 32 Jan 1970 00:00:00 GMT", "x, y"] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn entity_tags_match_like_nginx() {
        let e = "\"5-a\"";
        assert!(etag_matches(b"*", e, false));
        assert!(etag_matches(b"\"x\", \"5-a\"", e, false));
        assert!(etag_matches(b"W/\"5-a\"", e, true));
        assert!(!etag_matches(b"W/\"5-a\"", e, false));
        assert!(!etag_matches(b"\"5-ab\"", e, true));
        assert!(!etag_matches(b"\"5\"", e, true));
    }

    fn ranges_of(value: &str, len: u64) -> Option<Vec<(u64, u64)>> {
        let headers = vec![("range".to_string(), value.as_bytes().to_vec())];
        let req = Request {
            method: b"GET",
            version: Version::V11,
            host: "h",
            port: 443,
            args: None,
            headers: &headers,
        };
        let file = FileEntry { source: Source::Welcome, len, mtime: 0 };
        match ranges(&req, &file, "\"0-0\"") {
            Ranges::Whole => None,
            Ranges::Unsatisfiable => Some(Vec::new()),
            Ranges::Some(l) => Some(l),
        }
    }

    #[test]
    fn ranges_parse_like_nginx() {
        assert_eq!(ranges_of("bytes=0-3", 10), Some(vec![(0, 4)]));
        assert_eq!(ranges_of("bytes= 2 - ", 10), Some(vec![(2, 10)]));
        assert_eq!(ranges_of("bytes=-3", 10), Some(vec![(7, 10)]));
        assert_eq!(ranges_of("bytes=-30", 10), Some(vec![(0, 10)]));
        assert_eq!(ranges_of("bytes=-0", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=0-", 0), None);
        assert_eq!(ranges_of("bytes=0-1,4-5", 10), Some(vec![(0, 2), (4, 6)]));
        assert_eq!(ranges_of("bytes=5-100", 10), Some(vec![(5, 10)]));
        assert_eq!(ranges_of("bytes=0-", 10), Some(vec![(0, 10)]));
        assert_eq!(ranges_of("bytes=0-9,0-9", 10), None);
        assert_eq!(ranges_of("bytes=20-", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=1-2x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=1x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=1-x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=-x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=-1x", 10), Some(vec![]));
        assert_eq!(ranges_of("bytes=99999999999999999999-", 10), Some(vec![]));
        assert_eq!(ranges_of("items=0-1", 10), None);
        assert_eq!(ranges_of("bytes=", 10), None);
    }
}
