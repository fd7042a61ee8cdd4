//! A small arena tree built from lol_html's tokenizer events.
//!
//! lol_html tokenizes like a browser (script/style/textarea/CDATA modes included) but is a streaming
//! rewriter, not a DOM. The parsers here need structure ("the heading after this label", "the row that
//! holds this count"), so we keep every element and text node in document order in one `Vec`: a node's
//! descendants are exactly the indices `i + 1 .. end`, which makes subtree queries range scans and needs
//! no recursion anywhere (deeply nested input cannot overflow the stack).
//!
//! Text and most end tags are not taken from lol_html's events: its text events decode, copy and
//! re-serialize every character of the page, and an end tag handler boxes a closure per element, which
//! together were a third of the parse. Start tags, comments and doctypes come with their source
//! locations, so text and end tags are read from the source bytes between two of them, in the mode the
//! tokenizer was in there (see [`Gap`]); only raw-text and RCDATA elements keep an end tag handler.
//!
//! Most pages need no lol_html at all: [`parse_common`] reads start tags, comments, a doctype, raw-text
//! elements and SVG itself, raising the events lol_html would, and gives up on anything less common
//! (then lol_html reads the page). lol_html's per-tag work (an element object, selector matching,
//! handler dispatch, an attribute list) was most of a parse.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use lol_html::html_content::{Comment, Doctype, Element as LolElement};
use lol_html::{
    DocumentContentHandlers, ElementContentHandlers, HtmlRewriter, MemorySettings, Selector, Settings,
};

use crate::text::{decode_entities, normalize};

/// The attributes the parsers look at; others are dropped to keep the tree small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttrId {
    AriaLabel,
    Class,
    DataDate,
    DataMergeCount,
    DataTotalPages,
    Datetime,
    Href,
    Title,
    Value,
}

const ATTR_COUNT: usize = 9;

/// The id of a kept attribute from its lower-case name.
fn attr_id(lower: &[u8]) -> Option<AttrId> {
    Some(match lower {
        b"aria-label" => AttrId::AriaLabel,
        b"class" => AttrId::Class,
        b"data-date" => AttrId::DataDate,
        b"data-merge-count" => AttrId::DataMergeCount,
        b"data-total-pages" => AttrId::DataTotalPages,
        b"datetime" => AttrId::Datetime,
        b"href" => AttrId::Href,
        b"title" => AttrId::Title,
        b"value" => AttrId::Value,
        _ => return None,
    })
}

/// A kept attribute by its name as written in the source (any case).
fn kept_attribute(raw: &[u8]) -> Option<AttrId> {
    let mut buf = [0u8; 16];
    attr_id(lowercase(raw, &mut buf)?)
}

/// Tag names of GitHub's pages, borrowed instead of allocated per element.
fn common_tag(raw: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; 16];
    let lower = lowercase(raw, &mut buf)?;
    Some(match lower {
        b"a" => "a",
        b"b" => "b",
        b"body" => "body",
        b"br" => "br",
        b"button" => "button",
        b"circle" => "circle",
        b"clipboard-copy" => "clipboard-copy",
        b"code" => "code",
        b"details" => "details",
        b"div" => "div",
        b"em" => "em",
        b"footer" => "footer",
        b"form" => "form",
        b"g" => "g",
        b"h1" => "h1",
        b"h2" => "h2",
        b"h3" => "h3",
        b"h4" => "h4",
        b"h5" => "h5",
        b"h6" => "h6",
        b"head" => "head",
        b"header" => "header",
        b"hr" => "hr",
        b"html" => "html",
        b"i" => "i",
        b"img" => "img",
        b"input" => "input",
        b"li" => "li",
        b"link" => "link",
        b"main" => "main",
        b"meta" => "meta",
        b"nav" => "nav",
        b"ol" => "ol",
        b"p" => "p",
        b"path" => "path",
        b"rect" => "rect",
        b"relative-time" => "relative-time",
        b"script" => "script",
        b"section" => "section",
        b"small" => "small",
        b"span" => "span",
        b"strong" => "strong",
        b"style" => "style",
        b"summary" => "summary",
        b"svg" => "svg",
        b"template" => "template",
        b"time" => "time",
        b"title" => "title",
        b"ul" => "ul",
        _ => return None,
    })
}

/// ASCII-lowercases a short name into `buf`; `None` if it does not fit.
fn lowercase<'b>(raw: &[u8], buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..raw.len())?;
    for (o, r) in out.iter_mut().zip(raw) {
        *o = r.to_ascii_lowercase();
    }
    Some(out)
}

/// Elements deeper than this become siblings of the deepest one (browsers cap the depth too, Blink at
/// 512); it bounds every walk up the tree.
pub const MAX_DEPTH: usize = 512;

const OPEN: u32 = u32::MAX;
const NO_PARENT: u32 = u32::MAX;

/// One element or text node. Text and attribute values live in the document's string arena, and an
/// element's attributes in its attribute arena: a page of thousands of nodes costs a handful of
/// allocations, which matters most in wasm, where malloc is slow.
#[derive(Debug)]
struct Node {
    parent: u32,
    /// One past the index of the last descendant.
    end: u32,
    /// Lower-case tag name; empty for a text node.
    name: Cow<'static, str>,
    /// Element: its attributes `attrs[start..stop]`; text: its bytes `strings[start..stop]`.
    start: u32,
    stop: u32,
}

#[derive(Debug, Clone, Copy)]
struct Attr {
    id: AttrId,
    start: u32,
    stop: u32,
}

#[derive(Debug, Default)]
pub struct Document {
    nodes: Vec<Node>,
    attrs: Vec<Attr>,
    strings: String,
    /// For each kept attribute, the elements that have it, in document order.
    by_attr: [Vec<u32>; ATTR_COUNT],
}

/// How the tokenizer reads the source up to its next event, which decides what of it is text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Gap {
    /// Text and markup that raised no event of ours (an end tag we did not ask about, CDATA markers).
    #[default]
    Markup,
    /// The content of `<title>` or `<textarea>` (RCDATA): all text, no markup.
    Literal,
    /// The content of `<script>`, `<style>` and the other raw-text elements: not page text.
    Skip,
}

impl Gap {
    /// The mode after the start tag of an element named `name` (lower case), in `namespace`; the
    /// same rule lol_html's tokenizer follows.
    fn after_start_tag(name: &str, namespace: &str) -> Gap {
        if namespace != HTML_NAMESPACE {
            return Gap::Markup;
        }
        match name {
            "title" | "textarea" => Gap::Literal,
            "script" | "style" | "iframe" | "xmp" | "noembed" | "noframes" | "noscript" | "plaintext" => Gap::Skip,
            _ => Gap::Markup,
        }
    }
}

const HTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// The page's bytes, and the same as `str` when they are valid UTF-8 (checked once, not per piece).
struct Source<'a> {
    bytes: &'a [u8],
    utf8: Option<&'a str>,
}

impl<'a> Source<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Source { bytes, utf8: std::str::from_utf8(bytes).ok() }
    }

    /// The text of `range`, with invalid UTF-8 replaced as lol_html would.
    fn text(&self, range: Range<usize>) -> Cow<'a, str> {
        if let Some(text) = self.utf8.and_then(|s| s.get(range.clone())) {
            return Cow::Borrowed(text);
        }
        String::from_utf8_lossy(self.bytes.get(range).unwrap_or_default())
    }
}

#[derive(Default)]
struct Builder {
    doc: Document,
    stack: Vec<u32>,
    open_p: usize,
    /// Open `<template>` elements: their content is inert in browsers, so it is not page content here.
    inert: usize,
    /// Where the last event's token ends in the source, and how what follows it is read.
    cursor: usize,
    gap: Gap,
    /// lol_html's stack of open elements, mirrored, with what each one's end undoes: an end tag
    /// closes the nearest open element of its name and every element opened after it, as lol_html
    /// decides when it calls end tag handlers. Names live in `open_names`, used as a stack too.
    open: Vec<(Range<usize>, Opened)>,
    open_names: String,
    /// How many elements of `open` fall in each `name_bucket`: an end tag whose bucket is empty closes
    /// nothing, found without a walk down `open` (a page of stray end tags would make that quadratic).
    open_buckets: Vec<u32>,
    /// End tags of raw-text and RCDATA elements seen since the last other event, with the depth in
    /// `open` they close to. Their handlers cannot borrow the input to read the text before them, so
    /// that waits for the next event that can.
    ended: Vec<(Range<usize>, usize)>,
}

/// What the end tag of a start tag must undo.
#[derive(Debug, Clone, Copy)]
enum Opened {
    Element(u32),
    Template,
    Nothing,
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NO_PARENT)
}

impl Builder {
    fn top(&self) -> u32 {
        self.stack.last().copied().unwrap_or(NO_PARENT)
    }

    fn name_of(&self, id: u32) -> &str {
        self.doc.nodes.get(id as usize).map_or("", |n| &n.name)
    }

    fn pop(&mut self) {
        if let Some(id) = self.stack.pop() {
            let end = index(self.doc.nodes.len());
            let is_p = self.name_of(id) == "p";
            if let Some(node) = self.doc.nodes.get_mut(id as usize) {
                node.end = end;
            }
            if is_p {
                self.open_p = self.open_p.saturating_sub(1);
            }
        }
    }

    /// Closes `id` and everything opened inside it, if it is still open.
    fn close(&mut self, id: u32) {
        if self.doc.nodes.get(id as usize).is_none_or(|n| n.end != OPEN) {
            return;
        }
        while let Some(top) = self.stack.last().copied() {
            self.pop();
            if top == id {
                break;
            }
        }
    }

    /// Closes the nearest open element named one of `names`, unless a `boundary` element comes first.
    fn close_open(&mut self, names: &[&str], boundary: &[&str]) {
        let mut found = None;
        for &id in self.stack.iter().rev() {
            let name = self.name_of(id);
            if names.contains(&name) {
                found = Some(id);
                break;
            }
            if boundary.contains(&name) {
                break;
            }
        }
        if let Some(id) = found {
            self.close(id);
        }
    }

    /// The HTML tree builder's implied end tags, for the elements that matter on these pages: a new
    /// `<li>` closes the previous one, a block closes an open `<p>`, and so on.
    fn imply_end_tags(&mut self, name: &str) {
        match name {
            "li" => self.close_open(&["li"], &["ul", "ol", "table", "template"]),
            "dt" | "dd" => self.close_open(&["dt", "dd"], &["dl", "table", "template"]),
            "tr" => self.close_open(&["tr"], &["table", "tbody", "thead", "tfoot", "template"]),
            "td" | "th" => self.close_open(&["td", "th"], &["tr", "table", "template"]),
            "option" => self.close_open(&["option"], &["select", "datalist", "template"]),
            _ => {}
        }
        if self.open_p > 0 && closes_p(name) {
            self.close_open(&["p"], &["button", "table", "td", "th", "template", "svg", "math"]);
        }
    }

    fn open(&mut self, name: Cow<'static, str>, attrs: &[(AttrId, Cow<'_, str>)], has_content: bool) -> u32 {
        self.imply_end_tags(&name);
        if self.stack.len() >= MAX_DEPTH {
            self.pop();
        }
        let id = index(self.doc.nodes.len());
        let is_p = name == "p";
        let start = index(self.doc.attrs.len());
        for (attr, value) in attrs {
            let from = index(self.doc.strings.len());
            self.doc.strings.push_str(value);
            let to = index(self.doc.strings.len());
            self.doc.attrs.push(Attr { id: *attr, start: from, stop: to });
            if let Some(list) = self.doc.by_attr.get_mut(*attr as usize) {
                list.push(id);
            }
        }
        let stop = index(self.doc.attrs.len());
        let end = if has_content { OPEN } else { id.saturating_add(1) };
        self.doc.nodes.push(Node { parent: self.top(), end, name, start, stop });
        if has_content {
            self.stack.push(id);
            if is_p {
                self.open_p += 1;
            }
        }
        id
    }

    /// A start tag; returns its depth in `open` when it can have content.
    fn start(&mut self, name: Cow<'static, str>, attrs: &[(AttrId, Cow<'_, str>)], has_content: bool) -> Option<usize> {
        if !has_content {
            if self.inert == 0 {
                self.open(name, attrs, false);
            }
            return None;
        }
        let depth = self.open.len();
        let bucket = name_bucket(name.as_bytes());
        let from = self.open_names.len();
        self.open_names.push_str(&name);
        let opened = if name == "template" {
            // Keep the element, not its content.
            if self.inert == 0 {
                self.open(name, attrs, false);
            }
            self.inert += 1;
            Opened::Template
        } else if self.inert > 0 {
            Opened::Nothing
        } else {
            Opened::Element(self.open(name, attrs, true))
        };
        if let Some(count) = self.open_buckets.get_mut(bucket) {
            *count += 1;
        }
        self.open.push((from..self.open_names.len(), opened));
        Some(depth)
    }

    fn end(&mut self, opened: &Opened) {
        match *opened {
            Opened::Element(id) => self.close(id),
            Opened::Template => self.inert = self.inert.saturating_sub(1),
            Opened::Nothing => {}
        }
    }

    /// An event's token at `token` (a byte range of `input`): first the end tags queued before it, then
    /// the source before it as text; what follows it is read as `next`.
    fn token(&mut self, input: &Source<'_>, token: Range<usize>, next: Gap) {
        if !self.ended.is_empty() {
            let mut ended = std::mem::take(&mut self.ended);
            for (end_tag, depth) in ended.drain(..) {
                self.advance(input, end_tag, Gap::Markup);
                self.close_open_to(depth);
            }
            self.ended = ended;
        }
        self.advance(input, token, next);
    }

    /// Takes the source between the previous token and this one as text and moves past this one.
    fn advance(&mut self, input: &Source<'_>, token: Range<usize>, next: Gap) {
        if token.start > self.cursor {
            self.gap_text(input, self.cursor..token.start);
        }
        self.cursor = self.cursor.max(token.end);
        self.gap = next;
    }

    fn gap_text(&mut self, input: &Source<'_>, gap: Range<usize>) {
        match self.gap {
            Gap::Skip => {}
            Gap::Literal => self.text(&input.text(gap)),
            Gap::Markup => {
                let from = gap.start;
                data_state(input.bytes.get(gap).unwrap_or_default(), |item| match item {
                    GapItem::Text(text) => self.text(&input.text(from + text.start..from + text.end)),
                    GapItem::EndTag(name) => self.end_tag(name),
                });
            }
        }
    }

    /// Ends the elements of `open` from `depth` up.
    fn close_open_to(&mut self, depth: usize) {
        while self.open.len() > depth {
            let Some((name, opened)) = self.open.pop() else { break };
            let bucket = name_bucket(self.open_names.as_bytes().get(name.clone()).unwrap_or_default());
            if let Some(count) = self.open_buckets.get_mut(bucket) {
                *count = count.saturating_sub(1);
            }
            self.open_names.truncate(name.start);
            self.end(&opened);
        }
    }

    /// An end tag read from the source between events.
    fn end_tag(&mut self, raw_name: &[u8]) {
        if self.open_buckets.get(name_bucket(raw_name)).is_none_or(|&count| count == 0) {
            return;
        }
        let names = self.open_names.as_bytes();
        let depth = self.open.iter().rposition(|(name, _)| {
            names.get(name.clone()).is_some_and(|name| name.eq_ignore_ascii_case(raw_name))
        });
        if let Some(depth) = depth {
            self.close_open_to(depth);
        }
    }

    fn text(&mut self, chunk: &str) {
        if chunk.is_empty() || self.inert > 0 {
            return;
        }
        let top = self.top();
        let continues = self
            .doc
            .nodes
            .last()
            .is_some_and(|n| n.name.is_empty() && n.parent == top && n.stop as usize == self.doc.strings.len());
        // Whitespace between tags is most of a page's text nodes and never matters: keep none of it,
        // except one space inside a node split across chunks, where it separates words.
        let chunk = if chunk.bytes().all(|b| b.is_ascii_whitespace()) {
            if !continues {
                return;
            }
            " "
        } else {
            chunk
        };
        self.doc.strings.push_str(chunk);
        let stop = index(self.doc.strings.len());
        if continues {
            if let Some(last) = self.doc.nodes.last_mut() {
                last.stop = stop;
            }
            return;
        }
        let id = index(self.doc.nodes.len());
        let start = index(self.doc.strings.len() - chunk.len());
        self.doc.nodes.push(Node { parent: top, end: id.saturating_add(1), name: Cow::Borrowed(""), start, stop });
    }

    fn finish(mut self) -> Document {
        while !self.stack.is_empty() {
            self.pop();
        }
        let mut doc = self.doc;
        // Entities are decoded once the tree is complete (a chunk boundary may have split one); the
        // few strings that hold one get their decoded form appended to the arena.
        let Document { nodes, attrs, strings, .. } = &mut doc;
        let mut redo = |start: &mut u32, stop: &mut u32| {
            let Some(slice) = strings.get(*start as usize..*stop as usize) else { return };
            if let Cow::Owned(decoded) = decode_entities(slice) {
                *start = index(strings.len());
                strings.push_str(&decoded);
                *stop = index(strings.len());
            }
        };
        for node in nodes.iter_mut().filter(|n| n.name.is_empty()) {
            redo(&mut node.start, &mut node.stop);
        }
        for attr in attrs.iter_mut() {
            redo(&mut attr.start, &mut attr.stop);
        }
        doc
    }
}

/// What a gap read in the data state holds, in order.
enum GapItem<'a> {
    /// A range of the gap.
    Text(Range<usize>),
    /// The raw name of an end tag.
    EndTag(&'a [u8]),
}

/// Splits a gap read in the data state into text and end tags. Nothing else in it is markup: start
/// tags, comments and doctypes are events. CDATA (in SVG or MathML) keeps its content, an unfinished
/// tag at the end of the input is dropped as the tokenizer drops it, and a `<` that starts nothing is
/// text.
fn data_state(gap: &[u8], mut item: impl FnMut(GapItem<'_>)) {
    let at = |from: usize, to: usize| gap.get(from..to.min(gap.len())).unwrap_or_default();
    let span = |from: usize, to: usize| from.min(gap.len())..to.min(gap.len());
    let find = |from: usize, what: &[u8]| gap.get(from..).and_then(|rest| memchr::memmem::find(rest, what)).map(|p| p + from);
    let find_byte = |from: usize, byte: u8| gap.get(from..).and_then(|rest| memchr::memchr(byte, rest)).map(|p| p + from);
    let mut start = 0;
    let mut look = 0;
    while let Some(lt) = find_byte(look, b'<') {
        let after = at(lt + 1, gap.len());
        if let Some(end_tag) = after.strip_prefix(b"/") {
            let skip_to = if end_tag.first().is_some_and(u8::is_ascii_alphabetic) {
                let Some(end) = tag_end(gap, lt + 2) else {
                    item(GapItem::Text(span(start, lt)));
                    return; // cut off by the end of the input
                };
                let name_len = end_tag.iter().position(|&b| is_tag_space(b) || b == b'/' || b == b'>');
                item(GapItem::Text(span(start, lt)));
                item(GapItem::EndTag(at(lt + 2, lt + 2 + name_len.unwrap_or(0))));
                end
            } else if end_tag.first() == Some(&b'>') {
                item(GapItem::Text(span(start, lt)));
                lt + 3 // `</>` is ignored
            } else {
                look = lt + 1;
                continue;
            };
            start = skip_to;
            look = skip_to;
        } else if after.starts_with(b"![CDATA[") {
            item(GapItem::Text(span(start, lt)));
            let content = lt + 9;
            let close = find(content, b"]]>").unwrap_or(gap.len());
            item(GapItem::Text(span(content, close)));
            start = close + 3;
            look = start;
        } else if after.first().is_some_and(u8::is_ascii_alphabetic) {
            // A start tag raises an event, unless the input ends inside it.
            item(GapItem::Text(span(start, lt)));
            return;
        } else {
            look = lt + 1;
        }
    }
    item(GapItem::Text(span(start, gap.len())));
}

fn is_tag_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The length of the tag name at the start of `s`; `None` when the input ends inside it.
fn name_len(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| is_tag_space(b) || b == b'/' || b == b'>')
}

/// Where a tag whose name starts at `from` ends (past its `>`), by the tokenizer's rules: a `>` inside a
/// quoted attribute value does not end it. `None` when the input ends first.
fn tag_end(s: &[u8], from: usize) -> Option<usize> {
    // Most tags end right after their name.
    let rest = s.get(from..)?;
    if let Some(n) = name_len(rest).filter(|&n| rest.get(n) == Some(&b'>')) {
        return Some(from + n + 1);
    }
    scan_tag(s, from, |_, _| {}).map(|(end, _)| end)
}

/// Reads a tag whose name starts at `from` by the tokenizer's rules, calling `attribute` with the
/// byte ranges of each attribute's name and value (`None` for `<a href>` or `<a href=>`).
/// Returns where the tag ends (past its `>`) and whether it is self-closing (`/>`); `None` when the
/// input ends first.
fn scan_tag(
    s: &[u8],
    from: usize,
    mut attribute: impl FnMut(Range<usize>, Option<Range<usize>>),
) -> Option<(usize, bool)> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        Name,
        BeforeAttribute,
        Attribute,
        AfterAttribute,
        BeforeValue,
        AfterQuoted,
        Unquoted,
        SelfClosing,
    }
    let mut state = State::Name;
    // The attribute being read: its name, and its value once there is one.
    let mut current: Option<(Range<usize>, Option<Range<usize>>)> = None;
    let mut value_start = 0;
    let mut flush = |current: &mut Option<(Range<usize>, Option<Range<usize>>)>| {
        if let Some((name, value)) = current.take() {
            attribute(name, value);
        }
    };
    let end_name = |current: &mut Option<(Range<usize>, Option<Range<usize>>)>, at: usize| {
        if let Some((name, _)) = current {
            name.end = at;
        }
    };
    let set_value = |current: &mut Option<(Range<usize>, Option<Range<usize>>)>, value: Range<usize>| {
        if let Some((_, v)) = current {
            *v = Some(value);
        }
    };
    // Runs of bytes that keep the state (names, unquoted values) are skipped in one search each.
    let skip = |from: usize, end: fn(u8) -> bool| {
        s.get(from..).and_then(|rest| rest.iter().position(|&b| end(b))).map(|n| from + n)
    };
    let mut i = from + name_len(s.get(from..)?)?;
    while let Some(&b) = s.get(i) {
        let space = is_tag_space(b);
        state = match (state, b) {
            (State::BeforeValue, b'"' | b'\'') => {
                // Values are most of a tag's bytes: jump to the closing quote.
                let close = memchr::memchr(b, s.get(i + 1..)?)? + i + 1;
                set_value(&mut current, i + 1..close);
                i = close + 1;
                state = State::AfterQuoted;
                continue;
            }
            (_, b'>') => {
                match state {
                    State::Attribute => end_name(&mut current, i),
                    State::Unquoted => set_value(&mut current, value_start..i),
                    _ => {}
                }
                flush(&mut current);
                return Some((i + 1, state == State::SelfClosing));
            }
            // The arms that `continue` look at the same byte again in their new state.
            (State::SelfClosing, _) => {
                state = State::BeforeAttribute;
                continue;
            }
            (State::Unquoted, _) if space => {
                set_value(&mut current, value_start..i);
                State::BeforeAttribute
            }
            (State::Name, _) if space => State::BeforeAttribute,
            (State::Name, b'/') => State::SelfClosing,
            (State::Name | State::Unquoted, _) => state,
            (State::BeforeAttribute | State::AfterAttribute | State::BeforeValue, _) if space => state,
            (State::BeforeAttribute, b'/') | (State::Attribute, b'/') => {
                if state == State::Attribute {
                    end_name(&mut current, i);
                }
                state = State::AfterAttribute;
                continue;
            }
            (State::Attribute, _) if space => {
                end_name(&mut current, i);
                State::AfterAttribute
            }
            (State::AfterAttribute, b'=') => State::BeforeValue,
            (State::AfterAttribute | State::AfterQuoted, b'/') => State::SelfClosing,
            (State::BeforeAttribute | State::AfterAttribute, _) => {
                flush(&mut current);
                // The first byte is the name's even when it is `=`.
                let end = skip(i + 1, |b| is_tag_space(b) || matches!(b, b'/' | b'>' | b'='))?;
                current = Some((i..end, None));
                i = end;
                state = State::Attribute;
                continue;
            }
            (State::Attribute, b'=') => {
                end_name(&mut current, i);
                State::BeforeValue
            }
            (State::Attribute, _) => State::Attribute,
            (State::BeforeValue, _) => {
                value_start = i;
                i = skip(i + 1, |b| is_tag_space(b) || b == b'>')?;
                state = State::Unquoted;
                continue;
            }
            (State::AfterQuoted, _) if space => State::BeforeAttribute,
            (State::AfterQuoted, _) => {
                state = State::BeforeAttribute;
                continue;
            }
        };
        i += 1;
    }
    None
}

const NAME_BUCKETS: usize = 256;

/// A tag name's bucket, the same for any ASCII case.
fn name_bucket(name: &[u8]) -> usize {
    let lower = |b: Option<&u8>| usize::from(b.copied().unwrap_or(0).to_ascii_lowercase());
    (name.len().wrapping_mul(31) ^ lower(name.first()).wrapping_mul(7) ^ lower(name.last())) % NAME_BUCKETS
}

fn closes_p(name: &str) -> bool {
    matches!(
        name,
        "address" | "article" | "aside" | "blockquote" | "details" | "div" | "dl" | "fieldset"
            | "figure" | "footer" | "form" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "header"
            | "hr" | "li" | "main" | "nav" | "ol" | "p" | "pre" | "section" | "table" | "ul"
    )
}

/// The element's tag name, read from the source to avoid an allocation for the usual names.
fn tag_name(el: &LolElement<'_, '_>, input: &[u8]) -> Cow<'static, str> {
    let raw = input.get(el.source_location().bytes()).and_then(|tag| {
        let name = tag.strip_prefix(b"<")?;
        let len = name.iter().position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')?;
        name.get(..len)
    });
    if let Some(raw) = raw {
        if let Some(known) = common_tag(raw) {
            return Cow::Borrowed(known);
        }
    }
    Cow::Owned(el.tag_name())
}

/// The attributes we keep, as `(name, value)`; values borrow the input where it is valid UTF-8.
fn kept_attributes<'a>(el: &LolElement<'_, '_>, input: &Source<'a>, out: &mut Vec<(AttrId, Cow<'a, str>)>) {
    out.clear();
    for attr in el.attributes() {
        // Compare the name in the source bytes: no allocation for the many attributes we drop.
        let Some(raw) = attr.name_source_location().and_then(|loc| input.bytes.get(loc.bytes())) else {
            continue;
        };
        let Some(name) = kept_attribute(raw) else {
            continue;
        };
        // The first of duplicate attributes wins, as in browsers.
        if out.iter().all(|(n, _)| *n != name) {
            let value = match attr.value_source_location() {
                Some(loc) => input.text(loc.bytes()),
                None => Cow::Owned(attr.value()),
            };
            out.push((name, value));
        }
    }
}

impl Builder {
    fn for_input(len: usize) -> Builder {
        // Sized from typical pages (about one node per 40 bytes, a third of the bytes being text and
        // kept attribute values) so that the arenas rarely grow and copy.
        let mut builder = Builder { open_buckets: vec![0; NAME_BUCKETS], ..Builder::default() };
        builder.doc.nodes.reserve(len / 40);
        builder.doc.attrs.reserve(len / 80);
        builder.doc.strings.reserve(len / 3);
        builder.stack.reserve(64);
        builder
    }
}

/// Start tags after which the tokenizer reads to the end of the page (plaintext) or the namespace
/// bookkeeping needs more than a depth count of SVG (MathML, SVG's integration points, `<font>`).
fn needs_full_tokenizer(name: &str, in_svg: bool) -> bool {
    matches!(name, "plaintext" | "math" | "font" | "desc" | "foreignobject") || (in_svg && name == "title")
}

/// Where the content of a raw-text or RCDATA element `name` that starts at `from` ends: at the first
/// `</name` followed by a space, `/` or `>`, with the end of that end tag. `None` when the page ends
/// first, and for a script that holds `<!--`, whose escaped states can hide its end tag.
fn raw_text_end(input: &[u8], from: usize, name: &str) -> Option<Range<usize>> {
    let mut look = from;
    loop {
        let lt = memchr::memmem::find(input.get(look..)?, b"</")? + look;
        let after = input.get(lt + 2..)?;
        let matches = after.get(..name.len()).is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            && after.get(name.len()).is_some_and(|&b| is_tag_space(b) || b == b'/' || b == b'>');
        if matches {
            let content = input.get(from..lt)?;
            if name == "script" && memchr::memmem::find(content, b"<!--").is_some() {
                return None;
            }
            return Some(lt..tag_end(input, lt + 2)?);
        }
        look = lt + 2;
    }
}

/// HTML elements that leave SVG content when they start (lol_html's `causes_foreign_content_exit`).
fn leaves_foreign_content(name: &str) -> bool {
    matches!(
        name,
        "b" | "big" | "blockquote" | "body" | "br" | "center" | "code" | "dd" | "div" | "dl" | "dt" | "em"
            | "embed" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "head" | "hr" | "i" | "img" | "li"
            | "listing" | "menu" | "meta" | "nobr" | "ol" | "p" | "pre" | "ruby" | "s" | "small" | "span"
            | "strong" | "strike" | "sub" | "sup" | "table" | "tt" | "u" | "ul" | "var"
    )
}

/// HTML elements without content (lol_html's `is_void_element`).
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area" | "base" | "basefont" | "bgsound" | "br" | "col" | "embed" | "hr" | "img" | "input" | "keygen"
            | "link" | "meta" | "param" | "source" | "track" | "wbr"
    )
}

/// The tree of a page that uses only the common part of HTML, read without lol_html: start tags,
/// end tags, comments, a doctype and SVG, in the data state. The events are the ones lol_html would
/// raise for such a page (the fuzz target checks that the trees are equal), and cost a fraction of
/// its tokenizer, which builds, matches and dispatches an element object per tag. `None` as soon as
/// the page holds anything else (invalid UTF-8, NUL or CR, raw-text elements, MathML, bogus comments,
/// CDATA outside SVG ...): then lol_html reads the whole page.
pub fn parse_common(input: &[u8]) -> Option<Document> {
    let source = Source::new(input);
    if source.utf8.is_none() || memchr::memchr2(0, b'\r', input).is_some() {
        return None;
    }
    let mut builder = Builder::for_input(input.len());
    // lol_html's namespace stack holds HTML at the bottom and, with the tags above refused, only SVG
    // above it.
    let mut svg_depth = 0usize;
    let mut attrs: Vec<(AttrId, Cow<'_, str>)> = Vec::new();
    let find = |from: usize, what: &[u8]| {
        input.get(from..).and_then(|rest| memchr::memmem::find(rest, what)).map(|p| p + from)
    };
    let mut at = 0;
    while let Some(lt) = input.get(at..).and_then(|rest| memchr::memchr(b'<', rest)).map(|p| p + at) {
        let after = input.get(lt + 1..).unwrap_or_default();
        match after.first() {
            Some(b) if b.is_ascii_alphabetic() => {
                attrs.clear();
                let scanned = scan_tag(input, lt + 1, |name, value| {
                    // lol_html gives no source location for an attribute without a value, and
                    // `kept_attributes` skips such attributes.
                    let Some(value) = value else { return };
                    let Some(id) = input.get(name).and_then(kept_attribute) else { return };
                    if attrs.iter().all(|(n, _)| *n != id) {
                        attrs.push((id, source.text(value)));
                    }
                });
                // A tag cut off by the end of the input raises no event.
                let Some((end, self_closing)) = scanned else { break };
                let raw = after.get(..name_len(after)?)?;
                let name: Cow<'static, str> = match common_tag(raw) {
                    Some(known) => Cow::Borrowed(known),
                    None if raw.is_ascii() => Cow::Owned(String::from_utf8_lossy(raw).to_ascii_lowercase()),
                    None => return None,
                };
                if needs_full_tokenizer(&name, svg_depth > 0) {
                    return None;
                }
                if name == "svg" {
                    svg_depth += 1;
                } else if svg_depth > 0 && leaves_foreign_content(&name) {
                    svg_depth -= 1;
                }
                let has_content = if svg_depth == 0 { !is_void(&name) } else { !self_closing };
                let next = Gap::after_start_tag(&name, if svg_depth == 0 { HTML_NAMESPACE } else { "" });
                let raw_end = match next {
                    Gap::Markup => None,
                    _ => Some(raw_text_end(input, end, &name)?),
                };
                builder.token(&source, lt..end, next);
                let depth = builder.start(name, &attrs, has_content);
                at = end;
                // lol_html raises the end tag of such an element as an event: queue it as its handler would.
                if let Some(end_tag) = raw_end {
                    at = end_tag.end;
                    builder.ended.push((end_tag, depth?));
                }
            }
            Some(b'/') => match after.get(1) {
                Some(b) if b.is_ascii_alphabetic() => {
                    let Some(end) = tag_end(input, lt + 2) else { break };
                    let name = after.get(1..).unwrap_or_default();
                    let name = name.get(..name_len(name).unwrap_or(0)).unwrap_or_default();
                    // lol_html leaves SVG at its end tag, and at `</p>` and `</br>` inside it.
                    if svg_depth > 0 && [&b"svg"[..], b"p", b"br"].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        svg_depth -= 1;
                    }
                    at = end;
                }
                Some(b'>') => at = lt + 3,
                _ => return None,
            },
            Some(b'!') => {
                let declaration = after.get(1..).unwrap_or_default();
                let end = if let Some(body) = declaration.strip_prefix(b"--") {
                    // Only plain comments: not `<!-->`, `<!--->`, nor any that `--!>` or a nested `<!`
                    // could end elsewhere than at the first `-->`.
                    if body.starts_with(b">") || body.starts_with(b"->") {
                        return None;
                    }
                    let close = find(lt + 4, b"-->")?;
                    let text = input.get(lt + 4..close).unwrap_or_default();
                    if memchr::memmem::find(text, b"--!").is_some() || memchr::memmem::find(text, b"<!").is_some() {
                        return None;
                    }
                    close + 3
                } else if declaration.get(..7).is_some_and(|d| d.eq_ignore_ascii_case(b"DOCTYPE")) {
                    let close = find(lt, b">")?;
                    if input.get(lt..close).is_none_or(|d| d.contains(&b'"') || d.contains(&b'\'')) {
                        return None;
                    }
                    close + 1
                } else if svg_depth > 0 && declaration.starts_with(b"[CDATA[") {
                    // Text, read between events like any other.
                    at = find(lt + 9, b"]]>")? + 3;
                    continue;
                } else {
                    return None;
                };
                builder.token(&source, lt..end, Gap::Markup);
                at = end;
            }
            Some(b'?') => return None,
            // A `<` that starts nothing is text.
            Some(_) => at = lt + 1,
            None => break,
        }
    }
    builder.token(&source, input.len()..input.len(), Gap::Markup);
    Some(builder.finish())
}

impl Document {
    /// Tokenizes `input` (decoded as UTF-8, invalid bytes replaced) and builds the tree.
    pub fn parse(input: &[u8]) -> Result<Document, String> {
        match parse_common(input) {
            Some(doc) => Ok(doc),
            None => Document::parse_full(input),
        }
    }

    /// [`Document::parse`] with lol_html's tokenizer for any page (what `parse` falls back to).
    pub fn parse_full(input: &[u8]) -> Result<Document, String> {
        let builder = Rc::new(RefCell::new(Builder::for_input(input.len())));
        let any: Selector = "*".parse().map_err(|e| format!("selector: {e}"))?;
        let source = &Source::new(input);
        {
            let on_element = Rc::clone(&builder);
            let on_comment = Rc::clone(&builder);
            let on_doctype = Rc::clone(&builder);
            let mut attrs = Vec::new();
            let element_handler = move |el: &mut LolElement<'_, '_>| {
                let name = tag_name(el, input);
                kept_attributes(el, source, &mut attrs);
                let has_content = el.can_have_content();
                let next = Gap::after_start_tag(&name, el.namespace_uri());
                let depth = {
                    let mut builder = on_element.borrow_mut();
                    builder.token(source, el.source_location().bytes(), next);
                    builder.start(name, &attrs, has_content)
                };
                // Other end tags are read from the source between events (`Builder::end_tag`), which
                // costs far less than a handler per element; these end where the tokenizer says.
                let Some(depth) = depth.filter(|_| next != Gap::Markup) else {
                    return Ok(());
                };
                if let Some(handlers) = el.end_tag_handlers() {
                    let on_end = Rc::clone(&on_element);
                    handlers.push(Box::new(move |end| {
                        on_end.borrow_mut().ended.push((end.source_location().bytes(), depth));
                        Ok(())
                    }));
                }
                Ok(())
            };
            let settings = Settings {
                element_content_handlers: vec![(
                    Cow::Owned(any),
                    ElementContentHandlers::default().element(element_handler),
                )],
                document_content_handlers: vec![DocumentContentHandlers::default()
                    .comments(move |c: &mut Comment<'_>| {
                        on_comment.borrow_mut().token(source, c.source_location().bytes(), Gap::Markup);
                        Ok(())
                    })
                    .doctype(move |d: &mut Doctype<'_>| {
                        on_doctype.borrow_mut().token(source, d.source_location().bytes(), Gap::Markup);
                        Ok(())
                    })],
                // Not strict: an ambiguous page is still parsed the way a browser would guess.
                strict: false,
                memory_settings: MemorySettings::new(),
                ..Settings::new()
            };
            let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
            rewriter.write(input).map_err(|e| e.to_string())?;
            rewriter.end().map_err(|e| e.to_string())?;
        }
        // The text after the last event.
        builder.borrow_mut().token(source, input.len()..input.len(), Gap::Markup);
        let builder = Rc::try_unwrap(builder).map_err(|_| "tree builder still shared".to_owned())?;
        Ok(builder.into_inner().finish())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The tag name of element `i` (`None` for a text node).
    pub fn name(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(|n| n.name.as_ref()).filter(|n| !n.is_empty())
    }

    pub fn text_node(&self, i: usize) -> Option<&str> {
        let n = self.nodes.get(i).filter(|n| n.name.is_empty())?;
        self.strings.get(n.start as usize..n.stop as usize)
    }

    pub fn is(&self, i: usize, name: &str) -> bool {
        self.name(i) == Some(name)
    }

    /// The value of attribute `name` (lower case, one of the kept ones) of element `i`.
    pub fn attr(&self, i: usize, name: &str) -> Option<&str> {
        let id = attr_id(name.as_bytes())?;
        let n = self.nodes.get(i).filter(|n| !n.name.is_empty())?;
        let attrs = self.attrs.get(n.start as usize..n.stop as usize)?;
        let a = attrs.iter().find(|a| a.id == id)?;
        self.strings.get(a.start as usize..a.stop as usize)
    }

    /// The elements that have attribute `name` (lower case, one of the kept ones), in document order.
    pub fn with_attr(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        let list = attr_id(name.as_bytes()).and_then(|id| self.by_attr.get(id as usize));
        list.into_iter().flatten().map(|&i| i as usize)
    }

    pub fn has_class(&self, i: usize, class: &str) -> bool {
        self.attr(i, "class").is_some_and(|c| c.split_ascii_whitespace().any(|t| t == class))
    }

    pub fn parent(&self, i: usize) -> Option<usize> {
        let p = self.nodes.get(i)?.parent;
        (p != NO_PARENT).then_some(p as usize)
    }

    /// Indices of the descendants of `i`, in document order.
    pub fn descendants(&self, i: usize) -> Range<usize> {
        match self.nodes.get(i) {
            Some(n) => (i + 1)..(n.end as usize).clamp(i + 1, self.nodes.len()),
            None => 0..0,
        }
    }

    /// `i` and its descendants.
    pub fn subtree(&self, i: usize) -> Range<usize> {
        let d = self.descendants(i);
        if d.is_empty() && self.nodes.get(i).is_none() {
            return 0..0;
        }
        i..d.end
    }

    pub fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent(i), move |&a| self.parent(a))
    }

    /// The text of `i`'s subtree with whitespace collapsed, skipping the nodes in `skip`.
    pub fn text_excluding(&self, i: usize, skip: Range<usize>) -> String {
        let mut out = String::new();
        for j in self.subtree(i) {
            if skip.contains(&j) {
                continue;
            }
            if let Some(t) = self.text_node(j) {
                out.push_str(t);
                out.push(' ');
            }
        }
        normalize(&out)
    }

    pub fn text(&self, i: usize) -> String {
        self.text_excluding(i, 0..0)
    }

    /// The text of a small element (at most `max_nodes` nodes); `None` for a larger one. Values that sit
    /// next to a label or inside a link are short, and capping keeps hostile nesting from costing
    /// quadratic time.
    pub fn short_text(&self, i: usize, max_nodes: usize) -> Option<String> {
        (self.subtree(i).len() <= max_nodes).then(|| self.text(i))
    }

    /// For each label, the text nodes whose collapsed text equals it (ASCII case-insensitive), in one
    /// pass over the document.
    pub fn find_labels<const N: usize>(&self, labels: [&str; N]) -> [Vec<usize>; N] {
        let mut found: [Vec<usize>; N] = std::array::from_fn(|_| Vec::new());
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.name.is_empty() {
                continue;
            }
            let Some(text) = self.strings.get(node.start as usize..node.stop as usize) else { continue };
            let text = trim(text);
            // Most text nodes are whitespace between tags.
            if text.is_empty() {
                continue;
            }
            for (label, hits) in labels.iter().zip(found.iter_mut()) {
                if label_matches(text, label) {
                    hits.push(i);
                }
            }
        }
        found
    }

    pub fn find_label(&self, label: &str) -> Vec<usize> {
        let [hits] = self.find_labels([label]);
        hits
    }
}

/// Trims whitespace: the cheap ASCII trim, then the Unicode-aware one only if a non-ASCII byte is at
/// an edge (a no-break space, say).
fn trim(text: &str) -> &str {
    let text = text.trim_ascii();
    match (text.bytes().next(), text.bytes().last()) {
        (Some(a), Some(b)) if !a.is_ascii() || !b.is_ascii() => text.trim(),
        _ => text,
    }
}

/// `text` equals `label` once whitespace is collapsed, ignoring ASCII case, without allocating.
pub fn label_matches(text: &str, label: &str) -> bool {
    let text = trim(text);
    // Rule out other words before splitting.
    let (Some(first), Some(wanted_first)) = (text.bytes().next(), label.bytes().next()) else {
        return text.is_empty() && label.trim().is_empty();
    };
    if !first.eq_ignore_ascii_case(&wanted_first) || text.len() < label.len() || text.len() > label.len() * 4 {
        return false;
    }
    let mut words = text.split(char::is_whitespace).filter(|w| !w.is_empty());
    let mut wanted = label.split(' ').filter(|w| !w.is_empty());
    loop {
        match (words.next(), wanted.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(doc: &Document, range: Range<usize>) -> Vec<String> {
        range.filter_map(|i| doc.name(i).map(str::to_owned)).collect()
    }

    #[test]
    fn builds_tree_with_implied_ends() -> Result<(), String> {
        let doc = Document::parse(b"<ul><li>a<li>b<span>c</ul><p>x<div>y</div>")?;
        let ul = 0;
        assert!(doc.is(ul, "ul"));
        assert_eq!(names(&doc, doc.descendants(ul)), ["li", "li", "span"]);
        let p = (0..doc.len()).find(|&i| doc.is(i, "p")).ok_or("no p")?;
        let div = (0..doc.len()).find(|&i| doc.is(i, "div")).ok_or("no div")?;
        assert_eq!(doc.parent(div), None, "a div closes the open p");
        assert_eq!(doc.text(p), "x");
        Ok(())
    }

    #[test]
    fn decodes_entities_and_keeps_only_known_attributes() -> Result<(), String> {
        let doc = Document::parse(b"<a href='/x?a=1&amp;page=2' onclick=evil title=t TITLE=u>A&nbsp;&amp;&#66;</a>")?;
        assert_eq!(doc.attr(0, "href"), Some("/x?a=1&page=2"));
        assert_eq!(doc.attr(0, "title"), Some("t"));
        assert_eq!(doc.attr(0, "onclick"), None);
        assert_eq!(doc.attrs.len(), 2);
        assert_eq!(doc.with_attr("href").collect::<Vec<_>>(), [0]);
        assert_eq!(doc.text(0), "A &B");
        Ok(())
    }

    #[test]
    fn script_text_is_not_page_text() -> Result<(), String> {
        let doc = Document::parse(b"<div><script>var s = '<span>Total downloads</span>';</script>z</div>")?;
        assert!(doc.find_label("Total downloads").is_empty());
        assert_eq!(doc.text(0), "z");
        Ok(())
    }

    #[test]
    fn text_between_events_in_each_tokenizer_mode() -> Result<(), String> {
        let doc = Document::parse(
            b"<!DOCTYPE html><title>a</b>&amp;</title><div>x<!-- <span>y</span> -->z<style>s{}</style>w</div>\
              <textarea><i>t</i></textarea><noscript><p>n</p></noscript>",
        )?;
        let title = (0..doc.len()).find(|&i| doc.is(i, "title")).ok_or("no title")?;
        assert_eq!(doc.text(title), "a</b>&");
        let div = (0..doc.len()).find(|&i| doc.is(i, "div")).ok_or("no div")?;
        assert_eq!(doc.text(div), "xz w");
        let textarea = (0..doc.len()).find(|&i| doc.is(i, "textarea")).ok_or("no textarea")?;
        assert_eq!(doc.text(textarea), "<i>t</i>");
        assert!(doc.find_label("n").is_empty(), "noscript content is raw text");
        Ok(())
    }

    #[test]
    fn markup_without_events_is_not_text() -> Result<(), String> {
        // A stray end tag (with a `>` in a quoted value), `</>`, CDATA in SVG, a lone `<`.
        let doc = Document::parse(
            b"<div>a</span title=\"x>y\" z>b</>c<svg><![CDATA[<d>]]></svg>e < f</div><p>g<br></br>h</p><b>i<em",
        )?;
        assert_eq!(doc.text(0), "abc <d> e < f");
        let p = (0..doc.len()).find(|&i| doc.is(i, "p")).ok_or("no p")?;
        assert_eq!(doc.text(p), "g h");
        let b = (0..doc.len()).find(|&i| doc.is(i, "b")).ok_or("no b")?;
        assert_eq!(doc.text(b), "i", "a tag cut off by the end of the input is dropped");
        Ok(())
    }

    #[test]
    fn tag_ends_follow_the_tokenizer() {
        assert_eq!(tag_end(b"</a>", 2), Some(4));
        assert_eq!(tag_end(b"</a b='>' c=\">\">x", 2), Some(16));
        assert_eq!(tag_end(b"</a b=c>d>", 2), Some(8));
        assert_eq!(tag_end(b"</a b\">c", 2), Some(7), "a quote in a name opens nothing");
        assert_eq!(tag_end(b"</a/ b=\"x>", 2), None);
    }

    #[test]
    fn template_content_is_inert() -> Result<(), String> {
        let doc = Document::parse(b"<div><template><span>Total downloads</span><template>x</template>y</template>z</div>")?;
        assert!(doc.find_label("Total downloads").is_empty());
        assert_eq!(doc.text(0), "z");
        assert_eq!(names(&doc, doc.descendants(0)), ["template"]);
        Ok(())
    }

    #[test]
    fn depth_is_capped() -> Result<(), String> {
        let html = "<div>".repeat(MAX_DEPTH * 3);
        let doc = Document::parse(html.as_bytes())?;
        let deepest = doc.len() - 1;
        assert_eq!(doc.ancestors(deepest).count(), MAX_DEPTH - 1);
        Ok(())
    }

    #[test]
    fn svg_self_closing_and_void_elements() -> Result<(), String> {
        let doc = Document::parse(b"<svg><rect data-date=\"d1\"/><rect data-date=d2></rect></svg><img><b>t</b>")?;
        let rects: Vec<usize> = (0..doc.len()).filter(|&i| doc.is(i, "rect")).collect();
        assert_eq!(rects.len(), 2);
        assert_eq!(rects.iter().map(|&r| doc.parent(r)).collect::<Vec<_>>(), [Some(0), Some(0)]);
        let b = (0..doc.len()).find(|&i| doc.is(i, "b")).ok_or("no b")?;
        assert_eq!(doc.parent(b), None);
        Ok(())
    }
}

#[cfg(test)]
mod common_path {
    use super::*;

    fn same_tree(html: &[u8]) -> Result<(), String> {
        let common = parse_common(html).ok_or_else(|| format!("fell back: {}", String::from_utf8_lossy(html)))?;
        let full = Document::parse_full(html)?;
        assert_eq!(format!("{common:?}"), format!("{full:?}"), "{}", String::from_utf8_lossy(html));
        Ok(())
    }

    #[test]
    fn attributes_as_the_tokenizer_reads_them() {
        let attrs = |tag: &[u8]| {
            let mut found = Vec::new();
            let end = scan_tag(tag, 1, |name, value| {
                let text = |r: Range<usize>| String::from_utf8_lossy(tag.get(r).unwrap_or_default()).into_owned();
                found.push((text(name), value.map(text)));
            });
            (found, end)
        };
        let owned = |pairs: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            pairs.iter().map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned))).collect()
        };
        let expected = owned(&[("href", Some("x>y")), ("b", Some("c/")), ("d", None), ("e", Some(""))]);
        assert_eq!(attrs(b"<a href='x>y' b=c/ d e=\"\">"), (expected, Some((26, false))));
        assert_eq!(attrs(b"<a =x f= g\"=1/>"), (owned(&[("=x", None), ("f", Some("g\"=1/"))]), Some((15, false))));
        assert_eq!(attrs(b"<br/>"), (owned(&[]), Some((5, true))));
        assert_eq!(attrs(b"<h3 title='t' /ul>"), (owned(&[("title", Some("t")), ("ul", None)]), Some((18, false))));
        assert_eq!(attrs(b"<a/b='1'/>"), (owned(&[("b", Some("1"))]), Some((10, true))));
        assert_eq!(attrs(b"<a b='1"), (owned(&[]), None));
    }

    #[test]
    fn common_markup_builds_the_same_tree() -> Result<(), String> {
        for html in [
            &b"<!doctype html><html><head><title>a</b> &amp; </title ><style>p{}</style></head><body>"[..],
            b"<div class x title=t CLASS=y><!-- c <a> --><p>1<p>2</div></p>",
            b"<script>if (a</b) {}</script><noscript><b>n</b></noscript><textarea></textarea x>t",
            b"<svg><rect/><rect data-date=d></rect><![CDATA[<x>]]><div>out</div><path/></svg></svg>",
            b"<svg><p>x</p><svg/><g></br><b>y</b></svg>z<a href=\"/p?page=2\">2</a><img><br/>",
            b"<ul><li>a<li>b</ul><template><span>t</span></template>< 3 </> <a",
        ] {
            same_tree(html)?;
        }
        Ok(())
    }

    #[test]
    fn anything_else_falls_back() {
        for html in [
            &b"<script><!--</script>"[..],
            b"<math><mi>x</mi></math>",
            b"<svg><title>t</title></svg>",
            b"<svg><foreignObject><div></div></foreignObject></svg>",
            b"<?xml?>",
            b"</ x>",
            b"<![CDATA[x]]>",
            b"<!-->",
            b"<!-- a --!> -->",
            b"<!DOCTYPE html PUBLIC \"x\">",
            b"<title>never closed",
            b"<p>\r\n</p>",
            b"<p>\xff</p>",
            b"<plaintext>",
        ] {
            assert!(parse_common(html).is_none(), "{}", String::from_utf8_lossy(html));
        }
    }

    /// Pages of the captured kind take the path without lol_html, and it builds the same tree.
    #[test]
    fn captured_pages_take_the_common_path() -> Result<(), Box<dyn std::error::Error>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in ["tests/data/ghcr-pages", "tests/fixtures/pages"] {
            for entry in std::fs::read_dir(root.join(dir))? {
                let path = entry?.path();
                if path.extension().is_none_or(|e| e != "html") {
                    continue;
                }
                let page = std::fs::read(&path)?;
                let common = parse_common(&page).ok_or_else(|| format!("{}: fell back", path.display()))?;
                assert_eq!(format!("{common:?}"), format!("{:?}", Document::parse_full(&page)?), "{}", path.display());
            }
        }
        Ok(())
    }
}
