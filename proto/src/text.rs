//! Text from the network made safe to print on a terminal.
//!
//! Display names and caller names are chosen by strangers. Printed raw, a name could
//! carry terminal escape sequences (ESC `[`..., OSC 52 clipboard writes, title
//! changes), carriage returns that overwrite earlier output, or bidirectional
//! overrides that make text read differently from what it is (CVE-2021-42574,
//! "Trojan Source"). [`printable`] keeps ordinary text of any script and writes every
//! such character as a visible `\u{..}` escape instead.

/// Whether `c` may reach a terminal as is.
fn is_safe(c: char) -> bool {
    if c.is_control() {
        // C0 (including ESC, CR, LF, TAB), DEL and C1 (including CSI U+009B).
        return false;
    }
    !matches!(
        c,
        // Bidirectional embeddings, overrides and isolates; marks.
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        | '\u{061C}'
        // Line and paragraph separators (new lines in some terminals).
        | '\u{2028}' | '\u{2029}'
        // Zero-width characters and the byte-order mark: invisible differences.
        | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// `text` with every character that could control a terminal or disguise the text
/// written as `\u{hex}`; a backslash is doubled so an escape cannot be faked.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_safe(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_made_visible() {
        assert_eq!(printable("Alice"), "Alice");
        assert_eq!(printable("Zoë 李"), "Zoë 李");
        let evil = "\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2J\rBob\u{202e}gpj.exe\u{9b}31m";
        let shown = printable(evil);
        assert!(!shown.chars().any(|c| !is_safe(c)), "{shown:?}");
        assert_eq!(
            shown,
            "\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}\\u{1b}[2J\\u{d}Bob\\u{202e}gpj.exe\\u{9b}31m"
        );
        // A name cannot pretend to contain an escape.
        assert_eq!(printable("a\\u{1b}"), "a\\\\u{1b}");
    }
}
