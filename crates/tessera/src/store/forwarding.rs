//! Store wrappers forward every method, the provided ones included.
//!
//! A wrapper (a cache, a metrics layer, a test double, a dispatcher) that
//! forgets to forward a method with a provided implementation
//! (`create_capped`, `modify`, `modify_loaded`, `patch`) still compiles: the
//! call falls back to the trait's default, which runs over the wrapper's
//! other methods and loses the wrapped store's own implementation (Redis's
//! one-script patch and compare-and-set, the SQL stores' one-transaction
//! capped creation, which the default does not even make atomic). Rust has
//! no lint for it, so this test reads the sources of every crate of the
//! workspace (`src` and `tests`): it takes each trait's methods from its
//! definition, finds every `impl` of it that calls most of them on another
//! store (a wrapper), and fails naming the wrapper and the method it does
//! not define. `cargo test -p tessera --lib store::forwarding`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The traits whose methods a wrapper must all define.
const TRAITS: &[&str] = &["Store", "RefreshStore", "DbscStore"];

/// The wrappers known when this test was written, so that it fails if it
/// stops recognising one. Any other `impl` that forwards most methods to
/// another store is found and checked too.
const KNOWN: &[(&str, &str)] = &[
    ("CountingStore", "Store"),
    ("FailingStore", "Store"),
    ("CachedStore", "Store"),
    ("CachedStore", "RefreshStore"),
    ("MeteredStore", "Store"),
    ("MeteredStore", "RefreshStore"),
    ("SqlStore", "Store"),
    ("SqlStore", "RefreshStore"),
];

/// Wrappers that leave provided methods to the trait on purpose.
const EXEMPT: &[(&str, &str)] = &[
    // Runs the memory store behind the provided `modify` and
    // `modify_loaded`, to test them.
    ("Cas", "Store"),
];

#[test]
fn every_wrapper_defines_every_method_of_the_traits_it_forwards() -> TestResult {
    if !in_workspace() {
        return Ok(());
    }
    let crates = crates_dir();
    let sources = workspace_sources()?;
    let mut missing = Vec::new();
    let mut wrappers = BTreeSet::new();
    for &name in TRAITS {
        let required = trait_methods(&sources, name);
        for found in impls(&sources, name) {
            // A wrapper calls most of the trait's methods on what it wraps.
            let forwarded = required
                .iter()
                .filter(|m| found.body.contains(&format!(".{m}(")))
                .count();
            if forwarded * 2 < required.len() {
                continue;
            }
            wrappers.insert((found.ty.clone(), name));
            if EXEMPT.contains(&(found.ty.as_str(), name)) {
                continue;
            }
            let file = found.path.strip_prefix(&crates).unwrap_or(&found.path);
            for method in required.difference(&found.methods) {
                let (ty, file) = (&found.ty, file.display());
                missing.push(format!("{ty} (crates/{file}): {name}::{method}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these wrappers leave methods to the trait's default instead of \
         forwarding them to the wrapped store:\n  {}",
        missing.join("\n  ")
    );
    for &(ty, name) in KNOWN {
        assert!(
            wrappers.contains(&(ty.to_owned(), name)),
            "{ty} is no longer recognised as a {name} wrapper: {wrappers:?}"
        );
    }
    Ok(())
}

#[test]
fn the_source_reader_sees_provided_methods_and_skips_comments() -> TestResult {
    let src = "/// impl Store for Fake { fn doc() {} }\npub trait Store: Send {\n\
               /// { in a comment\n    async fn load(&self) -> u8;\n\
               async fn patch(&self) { let s = \"}\"; let c = '}'; f::<'_>(); }\n}\n\
               #[async_trait]\nimpl<S: Store> Store for Fake<S> {\n    async fn load(&self) {}\n}\n\
               impl RefreshStore for Other { fn r() {} }\n";
    let sources = vec![(PathBuf::from("x.rs"), blank(src))];
    assert_eq!(
        trait_methods(&sources, "Store"),
        BTreeSet::from(["load".to_owned(), "patch".to_owned()])
    );
    let found = impls(&sources, "Store");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].ty, "Fake");
    assert_eq!(found[0].methods, BTreeSet::from(["load".to_owned()]));
    if !in_workspace() {
        return Ok(());
    }
    let sources = workspace_sources()?;
    for name in TRAITS {
        assert!(trait_methods(&sources, name).len() >= 5);
    }
    Ok(())
}

/// Every `.rs` file under `crates/*/src` and `crates/*/tests`, comments
/// and literals blanked.
fn workspace_sources() -> io::Result<Vec<(PathBuf, String)>> {
    let crates = crates_dir();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates)? {
        let dir = entry?.path();
        collect(&dir.join("src"), &mut files)?;
        collect(&dir.join("tests"), &mut files)?;
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            Ok((path, blank(&text)))
        })
        .collect()
}

/// False when built outside the workspace (a packaged crate): then there
/// are no other crates to read.
fn in_workspace() -> bool {
    let found = crates_dir().join("../Cargo.toml").exists();
    if !found {
        eprintln!("not in the tessera workspace: skipped");
    }
    found
}

fn crates_dir() -> PathBuf {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    crates.canonicalize().unwrap_or(crates)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The names of the functions of `pub trait {name}`, found in exactly one
/// file.
fn trait_methods(sources: &[(PathBuf, String)], name: &str) -> BTreeSet<String> {
    let mut found = Vec::new();
    for (_, text) in sources {
        for (offset, line) in lines(text) {
            let Some(rest) = line.trim_start().strip_prefix("pub trait ") else {
                continue;
            };
            if rest
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with([':', '<', ' ', '{']))
            {
                found.push(block_functions(&text[offset..]).0);
            }
        }
    }
    match found.as_slice() {
        [methods] => methods.clone(),
        _ => panic!("`pub trait {name}` found {} times", found.len()),
    }
}

/// An `impl {trait} for {ty}` block.
struct Impl {
    ty: String,
    path: PathBuf,
    /// The functions it defines.
    methods: BTreeSet<String>,
    /// Its text, from the header to the closing brace.
    body: String,
}

/// Every `impl … {name} for Type…` block.
fn impls(sources: &[(PathBuf, String)], name: &str) -> Vec<Impl> {
    let needle = format!(" {name} for ");
    let mut out = Vec::new();
    for (path, text) in sources {
        for (offset, line) in lines(text) {
            if !line.trim_start().starts_with("impl") {
                continue;
            }
            let Some((_, rest)) = line.split_once(&needle) else {
                continue;
            };
            let end = rest
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            let (methods, len) = block_functions(&text[offset..]);
            out.push(Impl {
                ty: rest[..end].to_owned(),
                path: path.clone(),
                methods,
                body: text[offset..offset + len].to_owned(),
            });
        }
    }
    out
}

/// Each line of `text` with its byte offset.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let at = *offset;
        *offset += line.len();
        Some((at, line))
    })
}

/// The functions defined directly in the first `{ … }` block of `text`,
/// and the length of `text` up to the end of that block.
fn block_functions(text: &str) -> (BTreeSet<String>, usize) {
    let mut names = BTreeSet::new();
    let mut depth = 0;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (names, i + 1);
                }
            }
            'f' if depth == 1 && !prev.is_alphanumeric() && prev != '_' => {
                if let Some(rest) = text[i..].strip_prefix("fn ") {
                    let end = rest
                        .find(|c: char| !c.is_alphanumeric() && c != '_')
                        .unwrap_or(rest.len());
                    names.insert(rest[..end].to_owned());
                }
            }
            _ => {}
        }
        prev = c;
    }
    (names, text.len())
}

/// `src` with comments, strings and character literals replaced by spaces
/// (lengths and line breaks kept), so braces in them are not counted.
fn blank(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or(' ');
    while i < chars.len() {
        let c = chars[i];
        let skip = if c == '/' && at(i + 1) == '/' {
            // To the end of the line.
            chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .unwrap_or(chars.len() - i)
        } else if c == '/' && at(i + 1) == '*' {
            let end = (i + 2..chars.len()).find(|&j| chars[j] == '*' && at(j + 1) == '/');
            end.map_or(chars.len() - i, |j| j + 2 - i)
        } else if let Some(hashes) = raw_string_at(&chars, i) {
            // r"…", r#"…"#: no escapes; ends at a quote and as many #.
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = (body..chars.len()).find(|&j| chars[j..].starts_with(&close));
            end.map_or(chars.len() - i, |j| j + close.len() - i)
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1 - i
        } else if c == '\'' && at(i + 1) == '\\' {
            // '\n', '\'', '\u{..}'.
            (i + 2..chars.len())
                .find(|&j| chars[j] == '\'')
                .map_or(1, |j| j + 1 - i)
        } else if c == '\'' && at(i + 2) == '\'' {
            3
        } else {
            // A lifetime's quote, or code.
            out.push(c);
            i += 1;
            continue;
        };
        for &c in chars.iter().skip(i).take(skip) {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
        i += skip;
    }
    out
}

/// The number of `#` of a raw string literal starting at `i`, if one does.
fn raw_string_at(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'r') {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}
