//! Device names a person recognises ("Chrome on macOS", "Safari on
//! iPhone", "curl") from the `User-Agent` stored with a session.
//!
//! The parsing is the `woothee` crate's (Project Woothee's shared data set);
//! this module only turns its result into a short phrase. The name is a
//! hint for the device list, never a security decision: any client can send
//! any `User-Agent`.

use std::sync::OnceLock;

use woothee::parser::Parser;

/// What woothee reports for a field it could not determine.
const UNKNOWN: &str = "UNKNOWN";

fn parser() -> &'static Parser {
    static PARSER: OnceLock<Parser> = OnceLock::new();
    PARSER.get_or_init(Parser::new)
}

/// The operating system as people call it.
fn os_name(os: &str) -> Option<&str> {
    Some(match os {
        "" | UNKNOWN => return None,
        "Mac OSX" => "macOS",
        "Mac OS Classic" => "Mac OS",
        // "Windows 10" is also what Windows 11 sends: say only "Windows".
        w if w.starts_with("Windows") && !w.starts_with("Windows Phone") => "Windows",
        other => other,
    })
}

/// A short device name for a stored `User-Agent`.
///
/// Browsers read "BROWSER on SYSTEM"; HTTP libraries and tools by their
/// own name; anything unrecognised by its first product token (the word
/// before the first `/`), or "Unknown device" when there is none.
///
/// ```
/// use tessera_server::site::device::describe;
/// let mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
///            (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// assert_eq!(describe(Some(mac)), "Chrome on macOS");
/// assert_eq!(describe(Some("curl/8.5.0")), "curl");
/// assert_eq!(describe(None), "Unknown device");
/// ```
pub fn describe(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|ua| !ua.is_empty()) else {
        return String::from("Unknown device");
    };
    if let Some(r) = parser().parse(ua) {
        // Tools such as curl and wget are "HTTP Library"; woothee puts
        // the tool's own name in `version`.
        if r.name == "HTTP Library" && !r.version.is_empty() && r.version != UNKNOWN {
            return r.version.to_owned();
        }
        if !r.name.is_empty() && r.name != UNKNOWN {
            return match os_name(r.os) {
                Some(os) if r.category != "crawler" => format!("{} on {os}", r.name),
                _ => r.name.to_owned(),
            };
        }
        if let Some(os) = os_name(r.os) {
            return format!("A browser on {os}");
        }
    }
    product_token(ua).map_or_else(|| String::from("Unknown device"), str::to_owned)
}

/// The first product token of a `User-Agent` (RFC 9110 §10.1.5: `product
/// = token ["/" product-version]`), when it is a plain word.
fn product_token(ua: &str) -> Option<&str> {
    let first = ua.split([' ', '/']).next()?;
    let plain = !first.is_empty()
        && first.len() <= 40
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (plain && first != "Mozilla").then_some(first)
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_user_agents_get_names_people_recognise() {
        let cases = [
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            ("curl/8.5.0", "curl"),
            ("Wget/1.21.4", "wget"),
            ("tessera-cli/0.1", "tessera-cli"),
            ("Mozilla/5.0 (compatible)", "Unknown device"),
            ("", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe(Some(ua)), want, "{ua}");
        }
    }
}
