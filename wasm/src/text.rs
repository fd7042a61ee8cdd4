//! Text helpers: entity decoding, whitespace, numbers, dates.

use std::borrow::Cow;

/// Named character references that GitHub's templates emit (and a few common others). lol_html leaves
/// entities as they are; a full table (2,231 names) would cost more module size than it is worth for the
/// labels, numbers, dates and URLs we read. Unknown names stay as written.
const NAMED: &[(&str, &str)] = &[
    ("amp", "&"),
    ("apos", "'"),
    ("bull", "\u{2022}"),
    ("copy", "\u{a9}"),
    ("gt", ">"),
    ("hellip", "\u{2026}"),
    ("laquo", "\u{ab}"),
    ("ldquo", "\u{201c}"),
    ("lsquo", "\u{2018}"),
    ("lt", "<"),
    ("mdash", "\u{2014}"),
    ("middot", "\u{b7}"),
    ("nbsp", "\u{a0}"),
    ("ndash", "\u{2013}"),
    ("quot", "\""),
    ("raquo", "\u{bb}"),
    ("rdquo", "\u{201d}"),
    ("reg", "\u{ae}"),
    ("rsquo", "\u{2019}"),
    ("times", "\u{d7}"),
    ("trade", "\u{2122}"),
];

/// Decodes `&name;`, `&#NNN;` and `&#xHH;`; leaves anything else untouched.
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let (before, from_amp) = rest.split_at(amp);
        out.push_str(before);
        let after = from_amp.get(1..).unwrap_or("");
        match decode_one(after) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = after.get(used..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes the reference at the start of `s` (just after `&`); returns it and the bytes it used.
fn decode_one(s: &str) -> Option<(Cow<'static, str>, usize)> {
    if let Some(num) = s.strip_prefix('#') {
        let (digits, radix, prefix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (num, 10, 1),
        };
        let len = digits.bytes().take_while(|b| (*b as char).is_digit(radix)).count();
        if len == 0 || len > 8 {
            return None;
        }
        let value = u32::from_str_radix(digits.get(..len)?, radix).ok()?;
        let ch = match char::from_u32(value) {
            Some('\0') | None => '\u{fffd}',
            Some(c) => c,
        };
        let semicolon = usize::from(digits.get(len..)?.starts_with(';'));
        return Some((Cow::Owned(ch.to_string()), prefix + len + semicolon));
    }
    let len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let name = s.get(..len)?;
    if !s.get(len..)?.starts_with(';') {
        return None;
    }
    NAMED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| (Cow::Borrowed(*v), len + 1))
}

/// Collapses runs of whitespace (including no-break spaces) to one space and trims.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// An exact count: digits, optionally grouped with `,` (`1,418,338`).
pub fn parse_exact(s: &str) -> Option<u64> {
    let s = s.trim();
    let first = s.chars().next()?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut value: u64 = 0;
    let mut group = 0usize;
    let mut grouped = false;
    for c in s.chars() {
        match c {
            '0'..='9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(c as u8 - b'0'))?;
                group += 1;
            }
            ',' => {
                // Separators must split whole groups of three (after the first group).
                if group == 0 || (grouped && group != 3) || group > 3 {
                    return None;
                }
                grouped = true;
                group = 0;
            }
            _ => return None,
        }
    }
    if grouped && group != 3 {
        return None;
    }
    Some(value)
}

/// An abbreviated count as shown on the page: `248`, `14.4K`, `1.42M`, `3B`, `1,234`.
pub fn parse_abbreviated(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(v) = parse_exact(s) {
        return Some(v);
    }
    let last = s.chars().last()?;
    let multiplier: u64 = match last.to_ascii_uppercase() {
        'K' => 1_000,
        'M' => 1_000_000,
        'B' | 'G' => 1_000_000_000,
        'T' => 1_000_000_000_000,
        _ => return None,
    };
    let number = s.get(..s.len() - last.len_utf8())?.trim_end();
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = parse_exact(int)?;
    let mut frac_value: u64 = 0;
    let mut scale: u64 = 1;
    for b in frac.bytes() {
        frac_value = frac_value * 10 + u64::from(b - b'0');
        scale *= 10;
    }
    int.checked_mul(multiplier)?.checked_add(frac_value.checked_mul(multiplier)? / scale)
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` with a real day of a real month.
pub fn parse_date(s: &str) -> Option<(i64, i64, i64)> {
    let s = s.trim();
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (digits(y)?, digits(m)?, digits(d)?);
    (d >= 1 && d <= days_in_month(y, m)).then_some((y, m, d))
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm) and back.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// An ISO 8601 / RFC 3339 timestamp (`2026-07-21T04:35:43-07:00`, `...Z`, fractional seconds, seconds
/// optional) converted to UTC as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_datetime_utc(s: &str) -> Option<String> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let (y, mo, d) = parse_date(date)?;
    let zone_at = rest.find(['Z', 'z', '+', '-']);
    let (time, zone) = match zone_at {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let mut hms = time.split(':');
    let h = digits(hms.next()?)?;
    let mi = digits(hms.next()?)?;
    let sec = match hms.next() {
        Some(sec) => digits(sec.split('.').next()?)?,
        None => 0,
    };
    if hms.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset_minutes = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = zone.get(1..)?;
            let (zh, zm) = match z.split_once(':') {
                Some((a, b)) => (a, b),
                None if z.len() == 4 => (z.get(..2)?, z.get(2..)?),
                None => return None,
            };
            let (zh, zm) = (digits(zh)?, digits(zm)?);
            if zh > 23 || zm > 59 {
                return None;
            }
            sign * (zh * 60 + zm)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_minutes * 60;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t % 3600 / 60, t % 60))
}

/// The value of query parameter `name` in `href` (`...?a=1&page=3`).
pub fn query_param<'a>(href: &'a str, name: &str) -> Option<&'a str> {
    let query = href.split_once('?')?.1;
    let query = query.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The path of an href without scheme, host, query and fragment.
pub fn href_path(href: &str) -> &str {
    let href = href.trim();
    let without_scheme = href
        .strip_prefix("https://")
        .or_else(|| href.strip_prefix("http://"))
        .or_else(|| href.strip_prefix("//"));
    let path = match without_scheme {
        Some(rest) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or(""),
        None => href,
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or("")
}

/// Percent-decodes a URL path segment (`a%2Fb` -> `a/b`); invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &amp; b"), "a & b");
        assert_eq!(decode_entities("&#49;&#x32;&#X33"), "123");
        assert_eq!(decode_entities("&unknown; & &amp"), "&unknown; & &amp");
        assert_eq!(decode_entities("&#0;&#99999999;&#x110000;&#123456789;"), "\u{fffd}\u{fffd}\u{fffd}&#123456789;");
        assert_eq!(decode_entities("x&nbsp;y&hellip;"), "x\u{a0}y\u{2026}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_exact("1418338"), Some(1_418_338));
        assert_eq!(parse_exact(" 17,118 "), Some(17_118));
        assert_eq!(parse_exact("1,418,338"), Some(1_418_338));
        assert_eq!(parse_exact("1,41,8338"), None);
        assert_eq!(parse_exact("12,34"), None);
        assert_eq!(parse_exact("1.42M"), None);
        assert_eq!(parse_exact(""), None);
        assert_eq!(parse_exact("99999999999999999999999"), None);
        assert_eq!(parse_abbreviated("248"), Some(248));
        assert_eq!(parse_abbreviated("14.4K"), Some(14_400));
        assert_eq!(parse_abbreviated("1.42M"), Some(1_420_000));
        assert_eq!(parse_abbreviated("3b"), Some(3_000_000_000));
        assert_eq!(parse_abbreviated("1.2345K"), None);
        assert_eq!(parse_abbreviated("K"), None);
        assert_eq!(parse_abbreviated(".5K"), None);
        assert_eq!(parse_abbreviated("99999999999T"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-06-22"), Some((2026, 6, 22)));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("26-01-01"), None);
        assert_eq!(parse_datetime_utc("2026-07-21T04:35:43-07:00").as_deref(), Some("2026-07-21T11:35:43Z"));
        assert_eq!(parse_datetime_utc("2026-12-31T23:30:00-01:00").as_deref(), Some("2027-01-01T00:30:00Z"));
        assert_eq!(parse_datetime_utc("2026-03-01T00:10:00+0100").as_deref(), Some("2026-02-28T23:10:00Z"));
        assert_eq!(parse_datetime_utc("2026-07-21T10:00:00.123Z").as_deref(), Some("2026-07-21T10:00:00Z"));
        assert_eq!(parse_datetime_utc("2026-07-21T10:00Z").as_deref(), Some("2026-07-21T10:00:00Z"));
        assert_eq!(parse_datetime_utc("5 minutes ago"), None);
        assert_eq!(parse_datetime_utc("2026-07-21T25:00:00Z"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(query_param("/v?filters%5Bversion_type%5D=tagged&page=19", "page"), Some("19"));
        assert_eq!(query_param("/v?page=2#x", "page"), Some("2"));
        assert_eq!(href_path("https://github.com/orgs/a/packages?x=1"), "/orgs/a/packages");
        assert_eq!(href_path("/a/b#c"), "/a/b");
        assert_eq!(percent_decode("a%2Fb%2fc%zz%"), "a/b/c%zz%");
    }
}
