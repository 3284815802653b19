//! `<project>/.jetstart/session.properties`: the credentials a Gradle build bakes into
//! `BuildConfig`, and the `.gitignore` that keeps them out of git.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{atomic, escape};
use crate::watch::SelfWrites;

/// Folder of the session file, relative to the project root.
pub const DIR: &str = ".jetstart";
/// Name of the session file inside [`DIR`].
pub const FILE: &str = "session.properties";
/// Ignores everything in [`DIR`], so credentials never reach git.
const GITIGNORE: &[u8] = b"*\n";

/// What the session file holds.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    pub server_url: &'a str,
    pub http_url: &'a str,
    pub session_id: &'a str,
    pub token: &'a str,
    pub project_name: &'a str,
}

/// `<project>/.jetstart/session.properties`.
pub fn path(project_dir: &Path) -> PathBuf {
    project_dir.join(DIR).join(FILE)
}

/// The file's text: a comment and one escaped `key=value` line per entry.
pub fn render(contents: &Contents<'_>) -> String {
    let mut out = String::from(
        "# jetstart-rs dev session, read by gradle/jetstart.gradle into BuildConfig (debug builds).\n\
         # Rewritten on every start and rotation, removed on exit. Secret: never commit or share it.\n",
    );
    for (key, value) in [
        ("serverUrl", contents.server_url),
        ("httpUrl", contents.http_url),
        ("sessionId", contents.session_id),
        ("token", contents.token),
        ("projectName", contents.project_name),
    ] {
        out.push_str(&escape::properties(key, true));
        out.push('=');
        out.push_str(&escape::properties(value, false));
        out.push('\n');
    }
    out
}

/// Writes `.jetstart/.gitignore` (if it differs) and then the session file, atomically and 0600.
pub fn write(project_dir: &Path, contents: &Contents<'_>, self_writes: &SelfWrites) -> Result<()> {
    let dir = project_dir.join(DIR);
    create_private_dir(&dir)?;
    let gitignore = dir.join(".gitignore");
    if crate::project_file::read_regular(&gitignore, 1024)
        .ok()
        .as_deref()
        != Some(GITIGNORE)
    {
        atomic::write(&gitignore, GITIGNORE, atomic::Mode::Preserve)?;
    }
    self_writes.record(&gitignore, GITIGNORE);

    let file = dir.join(FILE);
    let text = render(contents);
    atomic::write(&file, text.as_bytes(), atomic::Mode::Private)?;
    self_writes.record(&file, text.as_bytes());
    Ok(())
}

/// Removes the session file; a file that is already gone is fine.
pub fn remove(project_dir: &Path) -> Result<()> {
    let file = path(project_dir);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| {
            format!(
                "could not remove {}; delete it by hand (it holds a dead session)",
                file.display()
            )
        }),
    }
}

/// Makes `.jetstart/` a real folder readable by its owner only (the file inside is the secret).
///
/// A repository can carry `.jetstart` as a symbolic link (git stores links): followed, the
/// server would write its credentials and a `.gitignore` of `*` wherever it points, and delete
/// files there on exit. Such a link is replaced by a folder (removing a link leaves what it
/// points to alone), with one warning; anything else that is not a folder is refused.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let cannot = || {
        format!(
            "could not create {}; make the project folder writable (the BuildConfig session file goes there)",
            dir.display()
        )
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(dir).unwrap_or_default();
            std::fs::remove_file(dir).with_context(|| {
                format!("{} is a symbolic link; remove it and run again", dir.display())
            })?;
            tracing::warn!(
                "{} was a symbolic link to {}; replaced it with a private folder (nothing was written where it pointed)",
                dir.display(),
                target.display()
            );
        }
        Ok(meta) if !meta.is_dir() => anyhow::bail!(
            "{} exists and is not a folder; move it away and run again (the BuildConfig session file goes there)",
            dir.display()
        ),
        _ => {}
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(cannot),
    }
    // Checked again without following links: whatever is there now must be our folder.
    let meta = std::fs::symlink_metadata(dir).with_context(cannot)?;
    if !meta.is_dir() {
        anyhow::bail!("{} changed while it was being created; run again", dir.display());
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not make {} private (chmod 700)", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_keys_and_values() {
        let text = render(&Contents {
            server_url: "ws://[fe80::1]:8766",
            http_url: "http://[fe80::1]:8765",
            session_id: "abcd1234",
            token: "T0k",
            project_name: "my \"app\" \\ é",
        });
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "serverUrl=ws\\://[fe80\\:\\:1]\\:8766",
                "httpUrl=http\\://[fe80\\:\\:1]\\:8765",
                "sessionId=abcd1234",
                "token=T0k",
                "projectName=my \"app\" \\\\ \\u00E9",
            ]
        );
        assert!(text.is_ascii());
    }
}
