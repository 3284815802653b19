//! ANSI colours that switch off entirely when the terminal (or the user) doesn't want them.

/// Paints text, or leaves it alone when colours are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    enabled: bool,
}

impl Style {
    pub const fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// True when escape codes are written.
    pub const fn enabled(self) -> bool {
        self.enabled
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
    pub fn blue(self, text: &str) -> String {
        self.paint("34", text)
    }
    pub fn magenta(self, text: &str) -> String {
        self.paint("35", text)
    }
    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }

    /// A log level, padded to 7 columns, coloured by severity (Logcat's usual colours).
    pub fn level(self, level: &str) -> String {
        let padded = format!("{level:<7}");
        match level.to_ascii_lowercase().as_str() {
            "verbose" | "v" => self.dim(&padded),
            "debug" | "d" => self.blue(&padded),
            "info" | "i" => self.green(&padded),
            "warn" | "warning" | "w" => self.yellow(&padded),
            "error" | "e" => self.red(&padded),
            "fatal" | "assert" | "wtf" | "f" | "a" => self.paint("1;35", &padded),
            _ => padded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_style_writes_no_escape_codes() {
        let plain = Style::new(false);
        assert_eq!(plain.red("x"), "x");
        assert_eq!(plain.level("warn"), "warn   ");
        assert_eq!(Style::new(true).red("x"), "\x1b[31mx\x1b[0m");
    }
}
