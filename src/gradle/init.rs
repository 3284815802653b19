//! `jetstart-rs init`: installs `gradle/jetstart.gradle` and the one line that applies it in the
//! app module's build file. Idempotent; never half-writes a file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{atomic, SCRIPT};

/// Where the script goes, relative to the project root.
pub const SCRIPT_PATH: &str = "gradle/jetstart.gradle";
/// The line appended to `app/build.gradle`. `rootProject.file` resolves against the root
/// project whatever the module's folder and OS path separator.
pub const APPLY_GROOVY: &str = "apply from: rootProject.file('gradle/jetstart.gradle')";
/// The line appended to `app/build.gradle.kts`.
pub const APPLY_KTS: &str = "apply(from = rootProject.file(\"gradle/jetstart.gradle\"))";

/// What `init` did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `gradle/jetstart.gradle`.
    pub script: Change,
    /// The app module's build file.
    pub build_file: PathBuf,
    /// Whether the apply line was appended (`Updated`) or already there (`Unchanged`).
    pub apply: Change,
}

/// `jetstart-rs init`: installs the Gradle integration and prints what it did.
pub fn init(project_dir: &Path) -> Result<()> {
    let outcome = install(project_dir)?;
    let build_file = outcome
        .build_file
        .strip_prefix(project_dir)
        .unwrap_or(&outcome.build_file)
        .display()
        .to_string();
    if outcome.script == Change::Unchanged && outcome.apply == Change::Unchanged {
        println!("Gradle integration already installed ({SCRIPT_PATH}, {build_file}); nothing changed.");
        return Ok(());
    }
    match outcome.script {
        Change::Created => println!("created {SCRIPT_PATH}"),
        Change::Updated => println!("updated {SCRIPT_PATH} to this version of jetstart-rs"),
        Change::Unchanged => println!("{SCRIPT_PATH} is up to date"),
    }
    match outcome.apply {
        Change::Unchanged => println!("{build_file} already applies it"),
        _ => println!("added `{}` to {build_file}", apply_line(&outcome.build_file)),
    }
    println!(
        "Debug builds now get BuildConfig.JETSTART_SERVER_URL, JETSTART_SESSION_ID, JETSTART_TOKEN and \
         JETSTART_HTTP_URL from .jetstart/session.properties, which `jetstart-rs dev` writes."
    );
    Ok(())
}

/// Installs the script and the apply line; see [`init`].
pub fn install(project_dir: &Path) -> Result<Outcome> {
    if !project_dir.is_dir() {
        anyhow::bail!(
            "project folder {} does not exist; pass the Android project root with --project",
            project_dir.display()
        );
    }
    let build_file = find_app_build_file(project_dir)?;
    let build = crate::project_file::read_regular(&build_file, crate::project_file::BUILD_FILE_MAX)
        .with_context(|| format!("could not read {}; check its permissions", build_file.display()))?;
    let appended = append_apply_line(&build, apply_line(&build_file));
    // The build file is staged first (refused if read-only; its temporary file written in
    // `app/`), so a build file or folder that can't be written fails before the script exists:
    // a failed init leaves nothing behind.
    let staged = appended
        .map(|contents| atomic::stage(&build_file, &contents, atomic::Mode::Preserve))
        .transpose()?;

    let script_file = project_dir.join(SCRIPT_PATH);
    let previous = crate::project_file::read_regular(&script_file, crate::project_file::BUILD_FILE_MAX).ok();
    let script = match &previous {
        Some(current) if current == SCRIPT.as_bytes() => Change::Unchanged,
        Some(_) => Change::Updated,
        None => Change::Created,
    };
    let undo = match script {
        Change::Unchanged => None,
        _ => Some(install_script(project_dir, &script_file, previous)?),
    };

    let apply = match staged {
        Some(staged) => {
            if let Err(e) = staged.commit() {
                if let Some(undo) = undo {
                    undo.run(&script_file);
                }
                return Err(e);
            }
            Change::Updated
        }
        None => Change::Unchanged,
    };
    Ok(Outcome {
        script,
        build_file,
        apply,
    })
}

/// How to take back the script if the build file can't be changed after all.
#[derive(Debug)]
struct Undo {
    /// The script as it was before (`None`: there was none).
    previous: Option<Vec<u8>>,
    /// `gradle/`, if this run created it.
    created_dir: Option<PathBuf>,
}

impl Undo {
    /// Best effort: the error that made us undo is the one reported.
    fn run(self, script_file: &Path) {
        match self.previous {
            Some(previous) => {
                let _ = atomic::write(script_file, &previous, atomic::Mode::Preserve);
            }
            None => {
                let _ = std::fs::remove_file(script_file);
            }
        }
        if let Some(dir) = self.created_dir {
            // Only removes it if empty: anything else in it is not ours.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Writes `gradle/jetstart.gradle`; on failure removes a `gradle/` folder it created.
fn install_script(project_dir: &Path, script_file: &Path, previous: Option<Vec<u8>>) -> Result<Undo> {
    let dir = project_dir.join("gradle");
    let created_dir = (!dir.exists()).then(|| dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "could not create {}; make the project folder writable",
            dir.display()
        )
    })?;
    let undo = Undo {
        previous,
        created_dir,
    };
    if let Err(e) = atomic::write(script_file, SCRIPT.as_bytes(), atomic::Mode::Preserve) {
        if let Some(dir) = undo.created_dir {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(undo)
}

/// `app/build.gradle`, else `app/build.gradle.kts`.
fn find_app_build_file(project_dir: &Path) -> Result<PathBuf> {
    let app = project_dir.join("app");
    ["build.gradle", "build.gradle.kts"]
        .iter()
        .map(|name| app.join(name))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "no app module in {}: looked for app/build.gradle and app/build.gradle.kts; run init in the \
                 Android project root (the folder with settings.gradle) or pass it with --project",
                project_dir.display()
            )
        })
}

fn apply_line(build_file: &Path) -> &'static str {
    if build_file.extension().is_some_and(|e| e == "kts") {
        APPLY_KTS
    } else {
        APPLY_GROOVY
    }
}

/// True if a line that isn't commented out applies `jetstart.gradle`.
pub fn has_apply_line(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        !line.starts_with("//") && line.contains("apply") && line.contains("jetstart.gradle")
    })
}

/// The build file with `line` appended (after a line break if the file lacks a final one, in the
/// file's own line-ending style), or `None` if it already applies the script.
pub fn append_apply_line(content: &[u8], line: &str) -> Option<Vec<u8>> {
    if has_apply_line(&String::from_utf8_lossy(content)) {
        return None;
    }
    let eol: &[u8] = if content.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = content.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(eol);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_existing_apply_lines() {
        assert!(has_apply_line(
            "plugins {}\napply from: rootProject.file('gradle/jetstart.gradle')\n"
        ));
        assert!(has_apply_line(
            "  apply from: \"$rootDir/gradle/jetstart.gradle\"\n"
        ));
        assert!(has_apply_line(
            "apply(from = rootProject.file(\"gradle/jetstart.gradle\"))"
        ));
        assert!(!has_apply_line("// apply from: 'gradle/jetstart.gradle'\n"));
        assert!(!has_apply_line("apply plugin: 'com.android.application'\n"));
    }

    #[test]
    fn appends_once_in_the_file_style() {
        let once = append_apply_line(b"plugins {}\n", APPLY_GROOVY).expect("appended");
        assert_eq!(once, format!("plugins {{}}\n{APPLY_GROOVY}\n").as_bytes());
        assert_eq!(append_apply_line(&once, APPLY_GROOVY), None);

        let no_final_newline = append_apply_line(b"plugins {}", APPLY_KTS).expect("appended");
        assert_eq!(
            no_final_newline,
            format!("plugins {{}}\n{APPLY_KTS}\n").as_bytes()
        );

        let crlf = append_apply_line(b"a\r\nb", APPLY_GROOVY).expect("appended");
        assert_eq!(crlf, format!("a\r\nb\r\n{APPLY_GROOVY}\r\n").as_bytes());
    }

    #[test]
    fn apply_line_follows_the_build_language() {
        assert_eq!(apply_line(Path::new("app/build.gradle")), APPLY_GROOVY);
        assert_eq!(apply_line(Path::new("app/build.gradle.kts")), APPLY_KTS);
    }
}
