//! Parsers of GitHub package pages: the package page, its versions list and an owner's package listing.
//!
//! Input is untrusted HTML as bytes; every entry point returns a value or a [`ParseError`] and never
//! panics. Parsing anchors on visible labels ("Total downloads", "Version downloads", "Last published")
//! and on structure (links, attributes), not on class lists or layout, which GitHub changes.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    clippy::todo
)]
#![forbid(unsafe_code)]

pub mod dom;
pub mod text;

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use dom::Document;
use text::{
    href_path, normalize, parse_abbreviated, parse_date, parse_datetime_utc, parse_exact, percent_decode,
    query_param,
};

/// The version of the contract between this module and the operator: the command line, the exit
/// statuses and the JSON shapes. The operator refuses a module whose interface it does not speak.
pub const INTERFACE_VERSION: u32 = 1;
/// The page kinds this module parses, as named on its command line.
pub const KINDS: [&str; 3] = ["package", "versions", "listing"];

/// What `--version` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub interface: u32,
    pub version: &'static str,
    pub kinds: [&'static str; 3],
}

/// This module's interface version, parser version and page kinds.
pub fn version() -> Version {
    Version { interface: INTERFACE_VERSION, version: env!("CARGO_PKG_VERSION"), kinds: KINDS }
}

const TOTAL_LABEL: &str = "Total downloads";
const VERSION_LABEL: &str = "Version downloads";
const PUBLISHED_LABEL: &str = "Last published";
/// What an owner's listing says when it has no packages (GitHub's empty states, in its own words).
const NO_PACKAGES_LABELS: [&str; 5] = [
    "No packages found",
    "No packages published",
    "doesn't have any public packages",
    "doesn\u{2019}t have any public packages",
    "has no public packages",
];
const NO_PACKAGES_LABELS_HINT: &str = "No packages found";
/// How far up from a label we look for the value that belongs to it.
const LABEL_BLOCK_LEVELS: usize = 3;
/// A page has one "Total downloads" label; looking at a few more tolerates a decoy, while a hostile page
/// with many cannot make the search quadratic.
const MAX_LABELS: usize = 8;
/// The most nodes a count, tag or page number element may hold (see `Document::short_text`).
const SMALL: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyCount {
    pub date: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    pub id: Option<String>,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub downloads: u64,
    /// True when the row gave only an abbreviated count ("1.2K").
    pub approximate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackagePage {
    pub downloads: u64,
    pub approximate: bool,
    pub downloads_text: String,
    pub daily: Vec<DailyCount>,
    pub versions: Vec<VersionRow>,
    pub last_published: Option<String>,
    pub versions_page_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionsPage {
    pub versions: Vec<VersionRow>,
    pub page_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub package_type: String,
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingPage {
    pub packages: Vec<ListingEntry>,
    pub page_count: u32,
}

/// What the program prints: one of the pages, tagged with `"kind"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Output {
    Package(PackagePage),
    Versions(VersionsPage),
    Listing(ListingPage),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Package,
    Versions,
    Listing,
}

impl Kind {
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "package" => Some(Kind::Package),
            "versions" => Some(Kind::Versions),
            "listing" => Some(Kind::Listing),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NoCount,
    /// How many "Version downloads" labels the page had: none of them sat beside a count.
    NoVersions { labels: usize },
    /// How many links the page had: none has a package path, and no empty-listing text was found.
    NoPackages { links: usize },
    Html(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoCount => write!(f, "no \"{TOTAL_LABEL}\" count found"),
            ParseError::NoVersions { labels: 0 } => {
                write!(f, "no version rows found: no \"{VERSION_LABEL}\" label on the page")
            }
            ParseError::NoVersions { labels } => write!(
                f,
                "no version rows found: {labels} \"{VERSION_LABEL}\" labels, none beside a count in a small element"
            ),
            ParseError::NoPackages { links } => write!(
                f,
                "no package links found in the listing: none of its {links} links ends in \
                 /packages/TYPE/package/NAME, and no \"{NO_PACKAGES_LABELS_HINT}\" text"
            ),
            ParseError::Html(e) => write!(f, "the page could not be tokenized: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn document(html: &[u8]) -> Result<Document, ParseError> {
    Document::parse(html).map_err(ParseError::Html)
}

/// Parses one page of the given kind.
pub fn parse(kind: Kind, html: &[u8]) -> Result<Output, ParseError> {
    match kind {
        Kind::Package => parse_package(html).map(Output::Package),
        Kind::Versions => parse_versions(html).map(Output::Versions),
        Kind::Listing => parse_listing(html).map(Output::Listing),
    }
}

/// The package page: total downloads (exact from the heading's `title`), the 30-day sparkline, the
/// version rows it shows, and when it was last published.
pub fn parse_package(html: &[u8]) -> Result<PackagePage, ParseError> {
    let doc = document(html)?;
    let [total, published, version] = doc.find_labels([TOTAL_LABEL, PUBLISHED_LABEL, VERSION_LABEL]);
    let (downloads, approximate, downloads_text) = total_downloads(&doc, &total).ok_or(ParseError::NoCount)?;
    Ok(PackagePage {
        downloads,
        approximate,
        downloads_text,
        daily: daily_counts(&doc),
        versions: version_rows(&doc, &version),
        last_published: last_published(&doc, &published),
        versions_page_count: page_count(&doc),
    })
}

/// A page of the versions list (`.../versions?filters[version_type]=tagged&page=N`).
pub fn parse_versions(html: &[u8]) -> Result<VersionsPage, ParseError> {
    let doc = document(html)?;
    let labels = doc.find_label(VERSION_LABEL);
    let versions = version_rows(&doc, &labels);
    if versions.is_empty() {
        return Err(ParseError::NoVersions { labels: labels.len() });
    }
    Ok(VersionsPage { versions, page_count: page_count(&doc).unwrap_or(1) })
}

/// A page of an owner's package listing. A page without package links is an empty listing only when it
/// says so (GitHub's "No packages found" and the like); anything else is `NoPackages`.
pub fn parse_listing(html: &[u8]) -> Result<ListingPage, ParseError> {
    let doc = document(html)?;
    let packages = listing_entries(&doc);
    if packages.is_empty() {
        if says_no_packages(&doc) {
            return Ok(ListingPage { packages, page_count: 1 });
        }
        let links = doc.with_attr("href").filter(|&i| doc.is(i, "a")).count();
        return Err(ParseError::NoPackages { links });
    }
    Ok(ListingPage { packages, page_count: page_count(&doc).unwrap_or(1) })
}

/// Whether a short visible text of the page is one of GitHub's empty-listing messages.
fn says_no_packages(doc: &Document) -> bool {
    (0..doc.len()).filter_map(|i| doc.text_node(i)).any(|t| {
        let t = normalize(t);
        t.len() <= 200 && NO_PACKAGES_LABELS.iter().any(|label| contains_ignore_case(&t, label))
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn is_heading(doc: &Document, i: usize) -> bool {
    matches!(doc.name(i), Some("h1" | "h2" | "h3" | "h4" | "h5" | "h6"))
}

/// The first node after `label` (a text node) that satisfies `want`, searching the label's enclosing
/// block: its parent element's subtree first, then up to [`LABEL_BLOCK_LEVELS`] levels further up.
/// Only nodes after the label count, so the values of earlier blocks ("Issues") are never taken.
fn value_after_label(doc: &Document, label: usize, want: impl Fn(usize) -> bool) -> Option<usize> {
    let label_el = doc.parent(label)?;
    let start = doc.subtree(label_el).end;
    for block in doc.ancestors(label_el).take(LABEL_BLOCK_LEVELS) {
        let end = doc.subtree(block).end;
        if let Some(found) = (start..end).find(|&i| want(i)) {
            return Some(found);
        }
    }
    None
}

fn total_downloads(doc: &Document, labels: &[usize]) -> Option<(u64, bool, String)> {
    for &label in labels.iter().take(MAX_LABELS) {
        let Some(heading) = value_after_label(doc, label, |i| is_heading(doc, i)) else {
            continue;
        };
        // The visible count is a short text; a heading left open over the rest of a hostile page is not.
        let visible = doc.short_text(heading, SMALL).map(|t| clip(&t, 64)).unwrap_or_default();
        if let Some(exact) = doc.attr(heading, "title").and_then(parse_exact) {
            return Some((exact, false, visible));
        }
        if let Some(approx) = parse_abbreviated(&visible) {
            return Some((approx, true, visible));
        }
    }
    None
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

fn daily_counts(doc: &Document) -> Vec<DailyCount> {
    let mut seen = HashSet::new();
    let mut days: Vec<DailyCount> = doc
        .with_attr("data-date")
        .filter_map(|i| {
            let date = doc.attr(i, "data-date")?.trim();
            let count = parse_exact(doc.attr(i, "data-merge-count")?)?;
            parse_date(date)?;
            Some(DailyCount { date: date.to_owned(), count })
        })
        .filter(|d| seen.insert(d.date.clone()))
        .collect();
    // ISO dates sort chronologically as strings.
    days.sort_by(|a, b| a.date.cmp(&b.date));
    days
}

fn last_published(doc: &Document, labels: &[usize]) -> Option<String> {
    for &label in labels.iter().take(MAX_LABELS) {
        let found = value_after_label(doc, label, |i| {
            doc.attr(i, "datetime").is_some_and(|v| parse_datetime_utc(v).is_some())
                || doc.attr(i, "title").is_some_and(|v| parse_datetime_utc(v).is_some())
        });
        if let Some(i) = found {
            return doc
                .attr(i, "datetime")
                .and_then(parse_datetime_utc)
                .or_else(|| doc.attr(i, "title").and_then(parse_datetime_utc));
        }
    }
    None
}

/// The number of pages from pagination: `data-total-pages`, "Page N" labels and numbered page links.
fn page_count(doc: &Document) -> Option<u32> {
    let total_pages = doc
        .with_attr("data-total-pages")
        .filter_map(|i| doc.attr(i, "data-total-pages")?.trim().parse::<u32>().ok());
    let page_labels = doc.with_attr("aria-label").filter_map(|i| {
        let label = normalize(doc.attr(i, "aria-label")?);
        let n = label.get(..5).filter(|p| p.eq_ignore_ascii_case("page ")).and(label.get(5..))?;
        n.parse::<u32>().ok()
    });
    let page_links = doc.with_attr("href").filter(|&i| doc.is(i, "a")).filter_map(|i| {
        let page = query_param(doc.attr(i, "href")?, "page")?;
        doc.short_text(i, SMALL).filter(|t| t == page)?;
        page.parse::<u32>().ok()
    });
    total_pages.chain(page_labels).chain(page_links).filter(|&n| n > 0).max()
}

/// Counts of label nodes inside `range`, given the sorted label positions.
fn labels_in(labels: &[usize], range: std::ops::Range<usize>) -> usize {
    let lo = labels.partition_point(|&l| l < range.start);
    let hi = labels.partition_point(|&l| l < range.end);
    hi.saturating_sub(lo)
}

/// The row of a version: the largest element around the label that holds no other version's label,
/// stopping at a list item (GitHub's rows are `li.Box-row`).
fn row_of(doc: &Document, labels: &[usize], label: usize) -> Option<usize> {
    let mut row = doc.parent(label)?;
    loop {
        if doc.is(row, "li") || doc.has_class(row, "Box-row") {
            return Some(row);
        }
        let Some(up) = doc.parent(row) else { return Some(row) };
        if labels_in(labels, doc.subtree(up)) > 1 {
            return Some(row);
        }
        row = up;
    }
}

/// `/OWNER/.../packages/TYPE/NAME/123`, `.../pkgs/TYPE/NAME/123` or `.../versions/123`: the version id.
fn version_id(href: &str) -> Option<String> {
    let path = href_path(href);
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let last = segments.next()?;
    if last.is_empty() || last.len() > 20 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut rest = segments;
    rest.any(|s| matches!(s, "packages" | "pkgs" | "versions")).then(|| last.to_owned())
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn version_row(doc: &Document, row: usize, label: usize) -> Option<VersionRow> {
    let label_el = doc.parent(label)?;
    // The count is the text around the label, e.g. `<span><svg/> 17,118 <span>Version downloads</span>`.
    let holder = doc.parent(label_el).unwrap_or(label_el);
    if doc.subtree(holder).len() > SMALL {
        return None;
    }
    let count_text = doc.text_excluding(holder, doc.subtree(label_el));
    let (downloads, approximate) = match parse_exact(&count_text) {
        Some(exact) => (exact, false),
        None => (parse_abbreviated(&count_text)?, true),
    };

    let mut tags: Vec<String> = Vec::new();
    let mut id = None;
    let mut link_text = None;
    let mut digest = None;
    for i in doc.subtree(row) {
        if let Some(t) = doc.text_node(i) {
            if digest.is_none() {
                let t = t.trim_ascii();
                if is_digest(t) {
                    digest = Some(t.to_owned());
                }
            }
            continue;
        }
        if digest.is_none() {
            if let Some(v) = doc.attr(i, "value").map(str::trim).filter(|v| is_digest(v)) {
                digest = Some(v.to_owned());
            }
        }
        if !doc.is(i, "a") {
            continue;
        }
        let href = doc.attr(i, "href").unwrap_or("");
        let is_tag = query_param(href, "tag").is_some() || doc.has_class(i, "Label");
        let vid = version_id(href);
        if is_tag {
            if let Some(tag) = doc.short_text(i, SMALL) {
                if !tag.is_empty() && !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        } else if vid.is_some() && link_text.is_none() {
            link_text = doc.short_text(i, SMALL).filter(|t| !t.is_empty());
        }
        if id.is_none() {
            id = vid;
        }
    }
    Some(VersionRow { id, name: digest.or(link_text), tags, downloads, approximate })
}

fn version_rows(doc: &Document, labels: &[usize]) -> Vec<VersionRow> {
    let mut rows = Vec::new();
    let mut seen_rows = HashSet::new();
    for &label in labels {
        // Two labels in one row (a changed layout) must not produce the same version twice.
        let Some(row) = row_of(doc, labels, label) else { continue };
        if !seen_rows.insert(row) {
            continue;
        }
        if let Some(v) = version_row(doc, row, label) {
            rows.push(v);
        }
    }
    rows
}

/// `(TYPE, NAME)` of a link whose path ends in `/packages/TYPE/package/NAME`.
fn package_link(href: &str) -> Option<(String, String)> {
    let path = href_path(href);
    let mut seg = path.rsplit('/');
    let name = seg.next().filter(|s| !s.is_empty())?;
    if seg.next()? != "package" {
        return None;
    }
    let kind = seg.next().filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric()))?;
    if seg.next()? != "packages" {
        return None;
    }
    let name = percent_decode(name);
    let name = name.trim();
    (!name.is_empty()).then(|| (kind.to_ascii_lowercase(), name.to_owned()))
}

fn is_owner_repo(s: &str) -> bool {
    let Some((owner, repo)) = s.split_once('/') else { return false };
    let owner_ok = !owner.is_empty() && owner.len() <= 39 && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let repo_ok = !repo.is_empty()
        && repo.len() <= 100
        && repo.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    owner_ok && repo_ok
}

/// The repository a listing row names: a link `/OWNER/REPO` whose text is `OWNER/REPO`, or the text
/// "in OWNER/REPO".
fn repository_in(doc: &Document, row: usize) -> Option<String> {
    for i in doc.subtree(row) {
        if !doc.is(i, "a") {
            continue;
        }
        let path = doc.attr(i, "href").map(href_path).unwrap_or("");
        let path = path.trim_matches('/');
        if is_owner_repo(path) && doc.short_text(i, SMALL).is_some_and(|t| t.eq_ignore_ascii_case(path)) {
            return Some(path.to_owned());
        }
    }
    let text = doc.text(row);
    let words: Vec<&str> = text.split(' ').collect();
    words.windows(2).find_map(|w| match w {
        [first, second] if first.eq_ignore_ascii_case("in") => {
            let candidate = second.trim_end_matches([',', '.', ';', ')']);
            is_owner_repo(candidate).then(|| candidate.to_owned())
        }
        _ => None,
    })
}

fn listing_entries(doc: &Document) -> Vec<ListingEntry> {
    let links: Vec<(usize, (String, String))> = doc
        .with_attr("href")
        .filter(|&i| doc.is(i, "a"))
        .filter_map(|i| Some((i, package_link(doc.attr(i, "href")?)?)))
        .collect();
    let positions: Vec<usize> = links.iter().map(|(i, _)| *i).collect();
    let mut entries: Vec<ListingEntry> = Vec::new();
    let mut seen = HashSet::new();
    for (link, (package_type, name)) in &links {
        if !seen.insert((package_type, name)) {
            continue;
        }
        // The row: the largest element around the link that links no other package.
        let mut row = *link;
        while let Some(up) = doc.parent(row) {
            let range = doc.subtree(up);
            let lo = positions.partition_point(|&p| p < range.start);
            let hi = positions.partition_point(|&p| p < range.end);
            let only_this = links
                .get(lo..hi)
                .is_some_and(|inside| inside.iter().all(|(_, key)| key.0 == *package_type && key.1 == *name));
            if !only_this {
                break;
            }
            row = up;
        }
        entries.push(ListingEntry {
            name: name.clone(),
            package_type: package_type.clone(),
            repository: repository_in(doc, row),
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids() {
        assert_eq!(version_id("/users/juanfont/packages/container/headscale/991763620?tag=v1").as_deref(), Some("991763620"));
        assert_eq!(version_id("/o/r/pkgs/npm/p/versions/12").as_deref(), Some("12"));
        assert_eq!(version_id("/juanfont/headscale/123"), None);
        assert_eq!(version_id("/orgs/o/packages/container/p/versions"), None);
    }

    #[test]
    fn package_links() {
        assert_eq!(
            package_link("/orgs/acme/packages/container/package/tools%2Fbuilder"),
            Some(("container".to_owned(), "tools/builder".to_owned()))
        );
        assert_eq!(
            package_link("https://github.com/users/bob/packages/npm/package/x?y=1"),
            Some(("npm".to_owned(), "x".to_owned()))
        );
        assert_eq!(package_link("/orgs/acme/packages?visibility=public"), None);
        assert_eq!(package_link("/orgs/acme/packages/container/package/"), None);
    }

    #[test]
    fn total_falls_back_to_visible_text() -> Result<(), ParseError> {
        let page = parse_package(b"<div><span>Total downloads</span><h3 title='n/a'>14.4K</h3></div>")?;
        assert_eq!((page.downloads, page.approximate, page.downloads_text.as_str()), (14_400, true, "14.4K"));
        Ok(())
    }

    #[test]
    fn visible_count_is_clipped() -> Result<(), ParseError> {
        assert_eq!(clip("1.42M", 64), "1.42M");
        assert_eq!(clip("ab\u{e9}cd", 3), "ab");
        let page = parse_package(b"<div><span>Total downloads</span><h3 title=5>five<i>x</i>")?;
        assert_eq!((page.downloads, page.downloads_text.as_str()), (5, "five x"));
        Ok(())
    }

    #[test]
    fn no_total_is_an_error() {
        let err = parse_package(b"<div><span>Issues</span><h3 title='5'>5</h3></div>");
        assert_eq!(err, Err(ParseError::NoCount));
        assert_eq!(ParseError::NoCount.to_string(), "no \"Total downloads\" count found");
    }

    #[test]
    fn earlier_headings_are_not_the_total() -> Result<(), ParseError> {
        let html = b"<body><div><div><span>Issues</span><h3 title='135'>135</h3></div>\
            <div><span>Total downloads</span></div><h3 title='9'>9</h3></div></body>";
        assert_eq!(parse_package(html).map(|p| p.downloads), Ok(9));
        // Three levels up is the limit: a heading further away belongs to another block.
        let html = b"<body><section><div><div><span>Total downloads</span></div></div></section>\
            <h3 title='9'>9</h3></body>";
        assert_eq!(parse_package(html), Err(ParseError::NoCount));
        Ok(())
    }

    #[test]
    fn abbreviated_version_counts_are_approximate() -> Result<(), ParseError> {
        let html = b"<ul><li><a href='/o/p/versions/1'>sha</a><span>1.2K <span>Version downloads</span></span></li>\
            <li><a href='/o/p/versions/2'>sha2</a><span>1,234 <span>Version downloads</span></span></li></ul>";
        let page = parse_versions(html)?;
        let rows: Vec<(u64, bool)> = page.versions.iter().map(|v| (v.downloads, v.approximate)).collect();
        assert_eq!(rows, [(1200, true), (1234, false)]);
        Ok(())
    }

    #[test]
    fn version_names_the_interface() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(version())?;
        let expected = serde_json::json!({
            "interface": INTERFACE_VERSION,
            "version": env!("CARGO_PKG_VERSION"),
            "kinds": ["package", "versions", "listing"],
        });
        assert_eq!(json, expected);
        Ok(())
    }

    #[test]
    fn listing_repository_as_text() -> Result<(), ParseError> {
        let html = b"<ul><li><a href='/orgs/o/packages/npm/package/a'>a</a> in o/repo-1</li>\
            <li><a href='/orgs/o/packages/npm/package/b'>b</a></li></ul>";
        let page = parse_listing(html)?;
        assert_eq!(page.packages.len(), 2);
        assert_eq!(page.packages.first().and_then(|p| p.repository.clone()).as_deref(), Some("o/repo-1"));
        assert_eq!(page.packages.get(1).and_then(|p| p.repository.clone()), None);
        Ok(())
    }
}
