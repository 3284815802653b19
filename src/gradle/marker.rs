//! JetStart's marker block in `app/build.gradle`: the `buildConfigField` lines between
//! `// JetStart injected fields` and `// End JetStart fields`, rewritten in place.

use std::path::Path;

use anyhow::{Context, Result};

use super::{atomic, escape, Fields};
use crate::watch::SelfWrites;

/// First line of the block, as JetStart writes it.
pub const START: &str = "// JetStart injected fields";
/// Last line of the block.
pub const END: &str = "// End JetStart fields";

/// Rewrites the block of `build_file` (if the file has one) with `fields`. Returns whether the
/// file has a block. The file is only written when its contents change, and only if it is a
/// regular file inside `project_dir` (a link inside the project is followed and kept).
pub fn update(
    project_dir: &Path,
    build_file: &Path,
    fields: &Fields<'_>,
    self_writes: &SelfWrites,
) -> Result<bool> {
    use crate::project_file::{self, BUILD_FILE_MAX};
    // Written where it really is: a link to a file elsewhere in the project stays a link.
    let (build_file, original) = match project_file::read_resolved(project_dir, build_file, BUILD_FILE_MAX) {
        Ok(read) => read,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let build_file = &build_file;
    let Some(rewritten) =
        rewrite(&original, fields).with_context(|| format!("in {}", build_file.display()))?
    else {
        return Ok(false);
    };
    if rewritten != original {
        atomic::write(build_file, &rewritten, atomic::Mode::Preserve)?;
    }
    self_writes.record(build_file, &rewritten);
    Ok(true)
}

/// The file with the lines strictly between the markers replaced by one `buildConfigField` line
/// per field, indented like the start marker and ended like it (`\n` or `\r\n`). Every other byte
/// is kept. `None` when there is no block.
pub fn rewrite(content: &[u8], fields: &Fields<'_>) -> Result<Option<Vec<u8>>> {
    let mut offset = 0;
    let mut start: Option<(usize, &[u8])> = None; // (end of the start line, the start line)
    for line in content.split_inclusive(|&b| b == b'\n') {
        let line_start = offset;
        offset += line.len();
        let trimmed = line.trim_ascii_start();
        match start {
            None if trimmed.starts_with(START.as_bytes()) => start = Some((offset, line)),
            Some((body_start, start_line)) if trimmed.starts_with(END.as_bytes()) => {
                let indent_len = start_line.len() - start_line.trim_ascii_start().len();
                let indent = &start_line[..indent_len];
                let eol: &[u8] = if start_line.ends_with(b"\r\n") {
                    b"\r\n"
                } else {
                    b"\n"
                };
                let mut out = Vec::with_capacity(content.len() + 256);
                out.extend_from_slice(&content[..body_start]);
                for (name, value) in fields.named() {
                    out.extend_from_slice(indent);
                    out.extend_from_slice(field_line(name, value).as_bytes());
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(&content[line_start..]);
                return Ok(Some(out));
            }
            _ => {}
        }
    }
    match start {
        Some(_) => anyhow::bail!(
            "found `{START}` but no `{END}` line after it; restore the end marker so the block can be \
             updated (the file was left untouched)"
        ),
        None => Ok(None),
    }
}

/// `buildConfigField "String", "NAME", "\"value\""`, the format JetStart writes.
pub fn field_line(name: &str, value: &str) -> String {
    format!(
        "buildConfigField \"String\", \"{name}\", \"{}\"",
        escape::groovy_double_quoted(&escape::java_literal(value))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields<'static> {
        Fields {
            server_url: "ws://192.168.1.2:8766",
            session_id: "abcd1234",
            token: "Tok3n",
            http_url: "http://192.168.1.2:8765",
        }
    }

    const BEFORE: &str = "android {\n    defaultConfig {\n        minSdk 24\n\n";
    const AFTER: &str = "    }\n}\n";

    #[test]
    fn rewrites_only_the_block() {
        let file = format!(
            "{BEFORE}        // JetStart injected fields\n        buildConfigField \"String\", \"JETSTART_SERVER_URL\", \"\\\"old\\\"\"\n        // End JetStart fields\n{AFTER}"
        );
        let out = String::from_utf8(rewrite(file.as_bytes(), &fields()).expect("ok").expect("block"))
            .expect("utf8");
        let expected = format!(
            "{BEFORE}        // JetStart injected fields\n\
             \x20       buildConfigField \"String\", \"JETSTART_SERVER_URL\", \"\\\"ws://192.168.1.2:8766\\\"\"\n\
             \x20       buildConfigField \"String\", \"JETSTART_SESSION_ID\", \"\\\"abcd1234\\\"\"\n\
             \x20       buildConfigField \"String\", \"JETSTART_TOKEN\", \"\\\"Tok3n\\\"\"\n\
             \x20       buildConfigField \"String\", \"JETSTART_HTTP_URL\", \"\\\"http://192.168.1.2:8765\\\"\"\n\
             \x20       // End JetStart fields\n{AFTER}"
        );
        assert_eq!(out, expected);
        // Idempotent.
        assert_eq!(
            rewrite(out.as_bytes(), &fields()).expect("ok").expect("block"),
            out.as_bytes()
        );
    }

    #[test]
    fn keeps_crlf_tabs_and_an_empty_block() {
        let file = b"a\r\n\t// JetStart injected fields\r\n\t// End JetStart fields\r\nz";
        let out = rewrite(file, &Fields::EMPTY).expect("ok").expect("block");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("a\r\n\t// JetStart injected fields\r\n\tbuildConfigField \"String\", \"JETSTART_SERVER_URL\", \"\\\"\\\"\"\r\n"));
        assert!(text.ends_with("\r\n\t// End JetStart fields\r\nz"));
        assert_eq!(text.matches("buildConfigField").count(), 4);
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "only CRLF line endings: {text:?}"
        );
    }

    #[test]
    fn no_block_and_broken_block() {
        assert!(rewrite(b"android {}\n", &fields()).expect("ok").is_none());
        let err = rewrite(b"// JetStart injected fields\nx\n", &fields()).expect_err("no end");
        assert!(err.to_string().contains("End JetStart fields"));
    }

    #[test]
    fn values_are_escaped_for_java_inside_groovy() {
        assert_eq!(
            field_line("JETSTART_TOKEN", "a\"$\\é"),
            r#"buildConfigField "String", "JETSTART_TOKEN", "\"a\\\"\$\\\\\\u00e9\"""#
        );
    }
}
