//! The receiver's check on a file name that came from the network.
//!
//! A manifest's name is chosen by the sender, who may be hostile. A receiver saves
//! the file under that name inside its `--accept-files` directory, so the name must be
//! one plain path component on every platform Parley runs on: no separators, no `..`,
//! nothing a file system treats specially. Names are refused rather than rewritten, so
//! what is saved is what the sender's user saw (or nothing). The rules follow
//! Microsoft's "Naming Files, Paths, and Namespaces" (reserved device names, trailing
//! dots and spaces) and POSIX (`/`, NUL).

use thiserror::Error;

/// Longest name, in bytes of UTF-8: the common file-system limit (ext4, NTFS, APFS).
pub const MAX_NAME_LEN: usize = 255;

/// Windows device names: a file called `NUL` or `con.txt` opens a device, not a file.
const DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$",
    "CONOUT$",
];

/// Characters Windows refuses in names (besides the separators and controls).
const RESERVED_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Why a file name is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    /// No name at all.
    #[error("empty file name")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    #[error("file name of {0} bytes exceeds the {MAX_NAME_LEN}-byte limit")]
    TooLong(usize),
    /// `.` or `..`: a directory, not a file.
    #[error("file name {0:?} names a directory")]
    DotName(String),
    /// Contains `/` or `\`: a path, not a name (covers absolute paths and `../x`).
    #[error("file name contains a path separator (only a plain name is accepted)")]
    Separator,
    /// Contains a control character (including NUL, newline, escape).
    #[error("file name contains control character U+{0:04X}")]
    Control(u32),
    /// Contains a character Windows reserves (`<>:"|?*`).
    #[error("file name contains reserved character {0:?}")]
    Reserved(char),
    /// A Windows device name such as `CON` or `nul.txt`.
    #[error("file name {0:?} is a device name")]
    Device(String),
    /// Ends in a dot or a space, which Windows silently strips.
    #[error("file name ends in a dot or a space")]
    TrailingDotOrSpace,
    /// Starts with a space (or is only spaces): invisible in listings, easy to spoof.
    #[error("file name starts with a space")]
    LeadingSpace,
}

/// Accepts `name` if it is one plain, portable file name; the reason otherwise.
///
/// Hidden files (`.profile`) are accepted: the receiver never overwrites, so they
/// cannot replace anything.
pub fn check_file_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName(name.to_string()));
    }
    for c in name.chars() {
        if c == '/' || c == '\\' {
            return Err(NameError::Separator);
        }
        if c.is_control() {
            return Err(NameError::Control(c as u32));
        }
        if RESERVED_CHARS.contains(&c) {
            return Err(NameError::Reserved(c));
        }
    }
    if name.starts_with(' ') {
        return Err(NameError::LeadingSpace);
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(NameError::TrailingDotOrSpace);
    }
    // `CON`, `con.txt`, `Con .tar.gz`: the part before the first dot, trimmed, decides.
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(NameError::Device(name.to_string()));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "report.pdf",
            "photo 1.jpg",
            ".profile",
            "archive.tar.gz",
            "Ünïcødé ☃.txt",
            "CONSOLE.txt",
            "nullable",
            "a",
        ] {
            assert_eq!(check_file_name(name), Ok(name), "{name}");
        }
        let longest = "x".repeat(MAX_NAME_LEN);
        assert!(check_file_name(&longest).is_ok());
    }

    #[test]
    fn hostile_names_are_refused() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (".", NameError::DotName(".".into())),
            ("..", NameError::DotName("..".into())),
            ("../etc/passwd", NameError::Separator),
            ("..\\..\\boot.ini", NameError::Separator),
            ("/etc/passwd", NameError::Separator),
            ("C:\\Windows\\x.dll", NameError::Reserved(':')),
            ("C:x", NameError::Reserved(':')),
            ("sub/file", NameError::Separator),
            ("a\0b", NameError::Control(0)),
            ("line\nbreak", NameError::Control(10)),
            ("esc\x1b[31m", NameError::Control(0x1b)),
            ("del\u{7f}", NameError::Control(0x7f)),
            ("what?", NameError::Reserved('?')),
            ("CON", NameError::Device("CON".into())),
            ("nul", NameError::Device("nul".into())),
            ("nul.txt", NameError::Device("nul.txt".into())),
            ("Com1.tar.gz", NameError::Device("Com1.tar.gz".into())),
            ("lpt9", NameError::Device("lpt9".into())),
            ("aux .txt", NameError::Device("aux .txt".into())),
            ("trailing.", NameError::TrailingDotOrSpace),
            ("trailing ", NameError::TrailingDotOrSpace),
            ("...", NameError::TrailingDotOrSpace),
            (" leading", NameError::LeadingSpace),
        ];
        for (name, why) in cases {
            assert_eq!(check_file_name(name).as_ref(), Err(why), "{name:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(check_file_name(&long), Err(NameError::TooLong(256)));
        // 86 three-byte characters: 258 bytes although only 86 characters.
        let wide = "€".repeat(86);
        assert_eq!(check_file_name(&wide), Err(NameError::TooLong(258)));
    }
}
