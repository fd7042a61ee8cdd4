//! The parser on the real captured pages (tests/data/ghcr-pages, values from its README) and on the
//! project's fixtures (tests/fixtures/pages).

use std::path::PathBuf;

use packagestats_parser::{
    parse_listing, parse_package, parse_versions, DailyCount, ListingEntry, PackagePage, ParseError, VersionRow,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(repo().join("tests/fixtures/pages").join(name))
}

/// The real captures, kept in the repository under tests/data/ghcr-pages.
fn real(name: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(repo().join("tests/data/ghcr-pages").join(name))
}

fn check_real(page: &PackagePage, total: u64, text: &str, newest: &str, oldest: &str, sum: u64) {
    assert_eq!(page.downloads, total);
    assert!(!page.approximate);
    assert_eq!(page.downloads_text, text);
    assert_eq!(page.daily.len(), 30);
    assert_eq!(page.daily.first().map(|d| d.date.as_str()), Some(oldest));
    assert_eq!(page.daily.last().map(|d| d.date.as_str()), Some(newest));
    assert!(page.daily.windows(2).all(|w| matches!(w, [a, b] if a.date < b.date)));
    assert_eq!(page.daily.iter().map(|d| d.count).sum::<u64>(), sum);
    assert!(page.versions.is_empty());
    assert_eq!(page.versions_page_count, None);
}

#[test]
fn real_icicle_insights_2026_08() -> TestResult {
    let html = real("icicle-insights-2026-08.html")?;
    let page = parse_package(&html)?;
    check_real(&page, 248, "248", "2026-08-08", "2026-07-10", 29);
    assert_eq!(page.last_published.as_deref(), Some("2026-07-29T07:36:30Z"));
    Ok(())
}

#[test]
fn real_icicle_insights_2026_09() -> TestResult {
    let html = real("icicle-insights-2026-09.html")?;
    let page = parse_package(&html)?;
    check_real(&page, 302, "302", "2026-09-24", "2026-08-26", 38);
    assert_eq!(page.last_published.as_deref(), Some("2026-09-24T20:19:35Z"));
    Ok(())
}

#[test]
fn real_headscale_2026_07() -> TestResult {
    let html = real("headscale-2026-07.html")?;
    let page = parse_package(&html)?;
    check_real(&page, 1_418_338, "1.42M", "2026-07-21", "2026-06-22", 195_120);
    assert_eq!(page.daily.first(), Some(&DailyCount { date: "2026-06-22".into(), count: 8149 }));
    assert_eq!(page.last_published.as_deref(), Some("2026-07-21T11:35:43Z"));
    Ok(())
}

fn row(id: &str, name: Option<&str>, tags: &[&str], downloads: u64) -> VersionRow {
    VersionRow {
        id: Some(id.to_owned()),
        name: name.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        downloads,
        approximate: false,
    }
}

#[test]
fn fixture_full_package_page() -> TestResult {
    let page = parse_package(&fixture("package-full.html")?)?;
    assert_eq!((page.downloads, page.approximate, page.downloads_text.as_str()), (1_418_338, false, "1.42M"));
    let days: Vec<(&str, u64)> = page.daily.iter().map(|d| (d.date.as_str(), d.count)).collect();
    assert_eq!(days, [("2026-07-19", 3310), ("2026-07-20", 3578), ("2026-07-21", 1553)]);
    assert_eq!(
        page.versions,
        [
            row("1052123365", Some(&format!("sha256:{}", "1".repeat(64))), &["v0.27.0", "latest", "0.27"], 1553),
            row("1047416062", Some(&format!("sha256:{}", "2".repeat(64))), &["main-8eec2db"], 120),
        ]
    );
    assert_eq!(page.last_published.as_deref(), Some("2026-07-21T11:35:43Z"));
    assert_eq!(page.versions_page_count, None);
    Ok(())
}

#[test]
fn fixture_versions_list() -> TestResult {
    let page = parse_versions(&fixture("versions-tagged-page2.html")?)?;
    assert_eq!(page.page_count, 7);
    assert_eq!(
        page.versions,
        [
            row(
                "512345678",
                Some("sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"),
                &["v2.4.1", "latest"],
                17_118
            ),
            row(
                "498765432",
                Some("sha256:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"),
                &["v2.4.0"],
                1_204_503
            ),
            row("401122334", None, &["sha-9f8e7d6"], 0),
        ]
    );
    Ok(())
}

#[test]
fn fixture_listing() -> TestResult {
    let page = parse_listing(&fixture("listing-org.html")?)?;
    assert_eq!(page.page_count, 3);
    let entry = |name: &str, t: &str, repo: Option<&str>| ListingEntry {
        name: name.into(),
        package_type: t.into(),
        repository: repo.map(Into::into),
    };
    assert_eq!(
        page.packages,
        [
            entry("widget", "container", Some("acme/widget")),
            entry("tools/builder", "container", Some("acme/build-tools")),
            entry("left-pad", "npm", None),
        ]
    );
    Ok(())
}

#[test]
fn fixture_abbreviated_total() -> TestResult {
    let page = parse_package(&fixture("package-abbreviated.html")?)?;
    assert_eq!((page.downloads, page.approximate, page.downloads_text.as_str()), (14_400, true, "14.4K"));
    assert!(page.daily.is_empty());
    assert_eq!(page.last_published, None);
    Ok(())
}

#[test]
fn fixture_missing_total() -> TestResult {
    assert_eq!(parse_package(&fixture("package-no-total.html")?), Err(ParseError::NoCount));
    Ok(())
}

#[test]
fn fixture_renamed_classes() -> TestResult {
    let page = parse_package(&fixture("package-renamed-classes.html")?)?;
    assert_eq!((page.downloads, page.approximate), (302, false));
    assert_eq!(page.daily.iter().map(|d| d.count).collect::<Vec<_>>(), [0, 4]);
    assert_eq!(page.last_published.as_deref(), Some("2026-09-24T20:19:35Z"));
    assert_eq!(
        page.versions,
        [
            row("777", Some(&format!("sha256:{}", "3".repeat(64))), &["v1.0.0"], 2001),
            row("776", None, &["v0.9.0"], 99),
        ]
    );
    Ok(())
}

#[test]
fn fixture_attributes_per_line() -> TestResult {
    let page = parse_package(&fixture("package-attributes-per-line.html")?)?;
    assert_eq!((page.downloads, page.approximate, page.downloads_text.as_str()), (2480, false, "2.5K"));
    let days: Vec<(&str, u64)> = page.daily.iter().map(|d| (d.date.as_str(), d.count)).collect();
    assert_eq!(days, [("2026-09-23", 5), ("2026-09-24", 11)]);
    assert_eq!(page.versions, [row("4242", None, &["edge"], 3_141_592)]);
    assert_eq!(page.last_published.as_deref(), Some("2026-09-24T20:19:35Z"));
    Ok(())
}

#[test]
fn pages_of_the_wrong_kind_are_errors() -> TestResult {
    let versions = fixture("versions-tagged-page2.html")?;
    assert_eq!(parse_package(&versions), Err(ParseError::NoCount));
    assert!(matches!(parse_listing(&fixture("package-abbreviated.html")?), Err(ParseError::NoPackages { .. })));
    assert_eq!(parse_versions(&fixture("package-abbreviated.html")?), Err(ParseError::NoVersions { labels: 0 }));
    Ok(())
}

#[test]
fn garbage_and_empty_input() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes().first().copied().unwrap_or(0)
        })
        .collect();
    for input in [&garbage[..], b"", b"<", b"</", b"<!--", b"<svg><rect data-date", b"\xff\xfe<\x00h3>"] {
        assert_eq!(parse_package(input), Err(ParseError::NoCount));
        assert!(matches!(parse_versions(input), Err(ParseError::NoVersions { .. })));
        assert!(matches!(parse_listing(input), Err(ParseError::NoPackages { .. })));
    }
}

#[test]
fn deep_nesting_is_handled() -> TestResult {
    let mut html = "<div><span>".repeat(200_000);
    html.push_str("<span>Total downloads</span><h3 title=\"5\">5</h3>");
    let page = parse_package(html.as_bytes())?;
    assert_eq!(page.downloads, 5);
    Ok(())
}

/// The markup with every class and id removed, list items turned into divs and one attribute per line:
/// what a redesign that keeps the visible labels and links might look like.
fn restructured(html: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(html);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(" class=\"").or_else(|| rest.find(" id=\"")) {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 1..).unwrap_or_default();
        let value = after.find('"').map_or(after.len(), |q| q + 1);
        let end = after.get(value..).and_then(|s| s.find('"')).map_or(after.len(), |e| value + e + 1);
        rest = after.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out.replace("<li", "<div").replace("</li>", "</div>").replace(" href=", "\n      href=").into_bytes()
}

#[test]
fn versions_list_without_classes_or_list_items() -> TestResult {
    let page = fixture("versions-tagged-page2.html")?;
    let changed = restructured(&page);
    assert!(!String::from_utf8_lossy(&changed).contains("Box-row"));
    assert_eq!(parse_versions(&changed)?, parse_versions(&page)?);
    Ok(())
}

#[test]
fn listing_without_classes_or_list_items() -> TestResult {
    let page = fixture("listing-org.html")?;
    assert_eq!(parse_listing(&restructured(&page))?, parse_listing(&page)?);
    Ok(())
}

#[test]
fn package_page_without_classes() -> TestResult {
    for name in ["package-full.html", "package-renamed-classes.html"] {
        let page = fixture(name)?;
        assert_eq!(parse_package(&restructured(&page))?, parse_package(&page)?, "{name}");
    }
    Ok(())
}

#[test]
fn an_owner_without_packages_is_an_empty_listing() -> TestResult {
    for text in ["<h3>No packages found</h3>", "<p>acme doesn&#39;t have any public packages yet.</p>",
                 "<div class='blankslate'><h2>This organization has no public packages.</h2></div>"] {
        let page = parse_listing(format!("<html><body><main>{text}</main></body></html>").as_bytes())?;
        assert!(page.packages.is_empty(), "{text}");
        assert_eq!(page.page_count, 1);
    }
    Ok(())
}

#[test]
fn failures_say_what_they_looked_for() {
    let err = parse_listing(b"<a href='/orgs/acme/repositories'>r</a><a href='/x'>x</a>");
    assert_eq!(err, Err(ParseError::NoPackages { links: 2 }));
    let text = err.map(|_| ()).unwrap_err().to_string();
    assert!(text.contains("none of its 2 links ends in /packages/TYPE/package/NAME"), "{text}");
    let err = parse_versions(b"<li><span>Version downloads</span> <b>many</b></li>");
    assert_eq!(err, Err(ParseError::NoVersions { labels: 1 }));
    // A long text that merely mentions the phrase is not the empty state.
    let long = format!("<p>{} No packages found</p>", "word ".repeat(60));
    assert!(parse_listing(long.as_bytes()).is_err());
}
