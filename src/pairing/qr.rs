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

/// Renders the payload for a terminal with Unicode half blocks, two modules per character cell.
///
/// Light modules are drawn as filled blocks and dark ones as blanks: on the usual dark terminal
/// background that gives dark-on-light, which is what phone scanners expect.
pub fn terminal(payload: &str) -> Result<String> {
    let modules = Modules::new(payload, TERMINAL_QUIET_ZONE)?;
    let mut out = String::with_capacity(modules.size * (modules.size / 2 + 1) * 3);
    for y in (0..modules.size).step_by(2) {
        for x in 0..modules.size {
            let top_light = !modules.is_dark(x, y);
            // Past the last row there is nothing to draw; a blank half keeps the block square.
            let bottom_light = y + 1 < modules.size && !modules.is_dark(x, y + 1);
            out.push(match (top_light, bottom_light) {
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

    #[test]
    fn terminal_block_is_square_and_framed_by_light_quiet_zone() {
        let text = terminal("192.168.1.2|8765|8766|abcdefgh|0123456789abcdefghijkl|demo").expect("qr");
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
