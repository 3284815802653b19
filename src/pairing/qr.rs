//! QR code renderings of the pairing payload: terminal half blocks and SVG.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code in the terminal. Two is enough for phone scanners and keeps
/// the block small; the SVG gets the standard four.
const TERMINAL_QUIET_ZONE: usize = 2;
const SVG_QUIET_ZONE: usize = 4;

/// A QR code's modules as rows of booleans (`true` = dark), with `quiet` light modules around.
struct Modules {
    size: usize,
    dark: Vec<bool>,
}

impl Modules {
    fn new(payload: &str, quiet: usize) -> Result<Self> {
        // Medium error correction: survives a glossy screen and a shaky hand, still compact.
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
            .context("the pairing payload is too long for a QR code")?;
        let width = code.width();
        let colors = code.to_colors();
        let size = width + 2 * quiet;
        let mut dark = vec![false; size * size];
        for (i, color) in colors.iter().enumerate() {
            if *color == Color::Dark {
                dark[(i / width + quiet) * size + i % width + quiet] = true;
            }
        }
        Ok(Self { size, dark })
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        y < self.size && self.dark[y * self.size + x]
    }
}

/// Columns the terminal rendering of `payload` takes.
pub fn terminal_width(payload: &str) -> Result<usize> {
    Ok(Modules::new(payload, TERMINAL_QUIET_ZONE)?.size)
}

/// Renders the payload for a terminal with Unicode half blocks, two modules per character cell.
///
/// Light modules are drawn as filled blocks and dark ones as blanks: on the usual dark terminal
/// background that gives dark-on-light, which is what phone scanners expect. On a light
/// background (`light_background`) it is the other way round, or scanners see a negative.
pub fn terminal(payload: &str, light_background: bool) -> Result<String> {
    let modules = Modules::new(payload, TERMINAL_QUIET_ZONE)?;
    let mut out = String::with_capacity(modules.size * (modules.size / 2 + 1) * 3);
    for y in (0..modules.size).step_by(2) {
        for x in 0..modules.size {
            // "Drawn" halves are filled: light modules on a dark background, dark ones on a light.
            let drawn = |x, y| modules.is_dark(x, y) == light_background;
            let top = drawn(x, y);
            // Past the last row there is nothing to draw; a blank half keeps the block square.
            let bottom = y + 1 < modules.size && drawn(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// Renders the payload as a standalone SVG element (no XML prolog), suitable for inline HTML.
pub fn svg(payload: &str) -> Result<String> {
    let modules = Modules::new(payload, SVG_QUIET_ZONE)?;
    let size = modules.size;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if modules.is_dark(x, y) {
                // Writing to a String can't fail.
                let _ = write!(path, "M{x} {y}h1v1h-1z");
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"Pairing QR code\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "192.168.1.2|8765|8766|abcdefgh|0123456789abcdefghijkl|demo";

    /// What a phone sees: the half-block text on a terminal whose background is light or dark
    /// (filled halves take the foreground, the other colour), decoded by an ordinary decoder.
    fn scan(text: &str, light_background: bool) -> Option<String> {
        const SCALE: usize = 4;
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        let margin = 4 * SCALE; // the terminal's background around the block
        let (w, h) = (width * SCALE + 2 * margin, lines.len() * 2 * SCALE + 2 * margin);
        let (background, foreground) = if light_background { (255, 0) } else { (0, 255) };
        let mut pixels = vec![background; w * h];
        for (row, line) in lines.iter().enumerate() {
            for (col, ch) in line.chars().enumerate() {
                let (top, bottom) = match ch {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    _ => (false, false),
                };
                for (half, filled) in [(0, top), (1, bottom)] {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let y = margin + (row * 2 + half) * SCALE + dy;
                            let x = margin + col * SCALE + dx;
                            if filled {
                                pixels[y * w + x] = foreground;
                            }
                        }
                    }
                }
            }
        }
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = image.detect_grids();
        grids
            .first()
            .and_then(|g| g.decode().ok())
            .map(|(_, content)| content)
    }

    #[test]
    fn each_rendering_scans_on_its_background_and_not_on_the_other() {
        let for_dark = terminal(PAYLOAD, false).expect("qr");
        let for_light = terminal(PAYLOAD, true).expect("qr");
        assert_eq!(scan(&for_dark, false).as_deref(), Some(PAYLOAD));
        assert_eq!(scan(&for_light, true).as_deref(), Some(PAYLOAD));
        // The wrong one is a negative, which scanners (and rqrr) don't read.
        assert_eq!(scan(&for_dark, true), None);
        assert_eq!(
            terminal_width(PAYLOAD).expect("width"),
            for_dark.lines().next().expect("line").chars().count()
        );
    }

    #[test]
    fn terminal_block_is_square_and_framed_by_light_quiet_zone() {
        let text = terminal(PAYLOAD, false).expect("qr");
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(lines[0].chars().all(|c| c == '█'), "top quiet zone is light");
        assert!(
            lines[..lines.len() - 1].iter().all(|l| l.starts_with("██")),
            "left quiet zone is light"
        );
    }

    #[test]
    fn svg_is_inline_ready() {
        let svg = svg("x|1|2|a|b|c").expect("svg");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    }
}
