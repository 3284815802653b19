//! ANSI colours (crossterm's `Stylize`) that switch off entirely when the terminal (or the user)
//! doesn't want them.

use crossterm::style::{StyledContent, Stylize};

use super::logline::Level;

/// Paints text, or leaves it alone when colours are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    enabled: bool,
}

impl Style {
    pub const fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    fn paint(self, styled: StyledContent<&str>) -> String {
        if self.enabled {
            styled.to_string()
        } else {
            (*styled.content()).to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(text.bold())
    }
    pub fn dim(self, text: &str) -> String {
        self.paint(text.dim())
    }
    pub fn red(self, text: &str) -> String {
        self.paint(text.dark_red())
    }
    pub fn green(self, text: &str) -> String {
        self.paint(text.dark_green())
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint(text.dark_yellow())
    }
    pub fn blue(self, text: &str) -> String {
        self.paint(text.dark_blue())
    }
    pub fn cyan(self, text: &str) -> String {
        self.paint(text.dark_cyan())
    }

    /// A log level, padded to 7 columns, coloured by severity (Logcat's usual colours).
    pub fn level(self, level: &str) -> String {
        let padded = format!("{level:<7}");
        match Level::parse(level) {
            Some(Level::Verbose) => self.dim(&padded),
            Some(Level::Debug) => self.blue(&padded),
            Some(Level::Info) => self.green(&padded),
            Some(Level::Warn) => self.yellow(&padded),
            Some(Level::Error) => self.red(&padded),
            Some(Level::Fatal) => self.paint(padded.as_str().dark_magenta().bold()),
            None => padded,
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
        // crossterm itself honours NO_COLOR, as `term::color_allowed` does.
        if std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
            assert_eq!(Style::new(true).red("x"), "\x1b[38;5;1mx\x1b[39m");
            assert_eq!(Style::new(true).bold("b"), "\x1b[1mb\x1b[0m");
        }
    }
}
